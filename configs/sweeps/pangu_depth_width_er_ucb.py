"""PanGu-π Pro's depth/width ablation (arXiv 2402.02791, Sec. 3.2) as a budgeted search.

The four ~3.4M non-embedding-parameter shapes of pangu_depth_width.py are the arms of an
ER-UCB bandit (Hu et al., "Cascaded Algorithm Selection with Extreme-Region UCB Bandit"); each
arm searches its learning rate and warmup with ZOOpt's SRacos, one 100-step trial per pull,
1600 steps in all, so the shape that reaches the best bits per byte at its *best* learning
rate gets most of the budget. Run:
tinylm sweep run --spec=sweeps/pangu_depth_width_er_ucb.py
"""

from pathlib import Path

import ml_collections

from tinylm_jax.orchestration.grid import load_spec


def get_config() -> ml_collections.ConfigDict:
    # The grid spec's arms, so both sweeps compare the same shapes.
    grid = load_spec(Path(__file__).with_name("pangu_depth_width.py"))
    return ml_collections.ConfigDict(
        {
            "name": "pangu_depth_width_er_ucb",
            "gin_files": list(grid.gin_files),
            "params": {
                "TrainConfig": {"eval_every": 0},
                "CheckpointConfig": {"every_steps": 50},
            },
            "arms": list(grid.arms),
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
