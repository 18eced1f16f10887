"""PanGu-π Pro's multiple-round training (arXiv 2402.02791, section "Multiple-Round
Training") against its controls, at the same total steps: 1 round of 2N steps vs 2 rounds of
N steps whose second round replays half the units, drawn by softmax(loss) (PanGu) or uniformly
(control), and TinyHelen's curriculum (arXiv 2501.00522): the easiest 5% by the model's own
loss, 5% more each time the held-out loss (evaluated every 10 steps) plateaus for 2 evals.
Run: tinylm sweep run --spec=sweeps/pangu_rounds.py; then `tinylm sweep report`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    two_rounds = [
        {"name": f"two_rounds_{s}", "params": {"RoundsConfig": {"selection": s}}}
        for s in ("softmax_loss", "uniform")
    ]
    tinyhelen = {
        "name": "tinyhelen",
        "params": {
            "RoundsConfig": {"num_rounds": 1, "selection": "tinyhelen", "patience": 2},
            "TrainConfig": {"eval_every": 10},
        },
    }
    return ml_collections.ConfigDict(
        {
            "name": "pangu_rounds",
            "gin_files": ["experiments/pangu_rounds.gin"],
            "arms": [{"name": "one_round", "params": {"RoundsConfig": {"num_rounds": 1}}}]
            + two_rounds
            + [tinyhelen],
        }
    )
