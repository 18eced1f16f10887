"""PanGu-π Pro's depth/width ablation (arXiv 2402.02791, Sec. 3.2) as a budgeted search.

The four ~3.4M non-embedding-parameter shapes of pangu_depth_width.py are the arms of an
ER-UCB bandit (Hu et al., "Cascaded Algorithm Selection with Extreme-Region UCB Bandit"); each
arm searches its learning rate and warmup with ZOOpt's SRacos, one 100-step trial per pull,
1600 steps in all, so the shape that reaches the best bits per byte at its *best* learning
rate gets most of the budget. Run:
tinylm sweep run --spec=launch/sweeps/pangu_depth_width_er_ucb.py
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    shapes = [(384, 2, 1024), (256, 4, 768), (192, 8, 512), (128, 16, 384)]
    return ml_collections.ConfigDict(
        {
            "name": "pangu_depth_width_er_ucb",
            "gin_files": ["experiments/demo.gin"],
            "params": {
                "TrainConfig": {"eval_every": 0},
                "CheckpointConfig": {"every_steps": 50},
            },
            "arms": [
                {
                    "name": f"d{d}_l{layers}",
                    "params": {
                        "ModelConfig": {
                            "d_model": d,
                            "n_layers": layers,
                            "n_heads": d // 64,
                            "n_kv_heads": d // 64,
                            "ffn_dim": ffn,
                        }
                    },
                }
                for d, layers, ffn in shapes
            ],
            "strategy": "er_ucb",
            "budget": 1600,
            "rung_steps": 100,
            "search": {
                "OptimizerConfig": {
                    "learning_rate": {"log_uniform": [1e-4, 3e-2]},
                    "warmup_steps": [0.0, 0.1],  # a fraction of the trial's steps
                }
            },
        }
    )
