"""The four optax optimizers (`OptimizerConfig.name`) on the quick-start demo, at matched
steps, each at a learning rate from its own paper's guidance: AdamW at the demo's 3e-3; Lion
(Chen et al., arXiv 2302.06675, Sec. 5) at a tenth of it with ten times the weight decay, so
lr x wd is unchanged; Adafactor (Shazeer & Stern, arXiv 1804.04235) with its relative step
size at T5's 1e-2 (Raffel et al., arXiv 1910.10683, Sec. 3.1.2); Muon with its update RMS
matched to AdamW's (Liu et al., arXiv 2502.16982, Sec. 2.2), so it shares AdamW's rate.
Compare the held-out bits per byte and tokens/s.
Run: tinylm sweep run --spec=sweeps/optimizers.py && tinylm sweep report --spec=sweeps/optimizers.py
"""

import ml_collections

ARMS = {
    "adamw": {"name": "adamw"},
    "lion": {"name": "lion", "learning_rate": 3e-4, "weight_decay": 1.0},
    "adafactor": {"name": "adafactor", "learning_rate": 1e-2},
    "muon": {"name": "muon"},
}


def get_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "name": "optimizers",
            "gin_files": ["experiments/demo.gin"],
            "params": {
                "TrainConfig": {
                    "num_steps": 100,
                    "log_every": 10,
                    "eval_every": 0,
                    "eval_steps": 8,
                },
                "CheckpointConfig": {"every_steps": 100},
            },
            "arms": [
                {"name": name, "params": {"OptimizerConfig": changes}}
                for name, changes in ARMS.items()
            ],
        }
    )
