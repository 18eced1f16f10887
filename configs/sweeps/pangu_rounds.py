"""PanGu-π Pro's multiple-round training (arXiv 2402.02791, section "Multiple-Round
Training") against its controls, at the same total steps: 1 round of 2N steps vs 2 rounds of
N steps whose second round replays half the units, drawn by softmax(loss) (PanGu), uniformly
(control), or the easiest half (a TinyHelen-style curriculum, arXiv 2501.00522).
Run: tinylm sweep run --spec=sweeps/pangu_rounds.py; then `tinylm sweep report`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    two_rounds = [
        {"name": f"two_rounds_{s}", "params": {"RoundsConfig": {"selection": s}}}
        for s in ("softmax_loss", "uniform", "easiest_first")
    ]
    return ml_collections.ConfigDict(
        {
            "name": "pangu_rounds",
            "gin_files": ["experiments/pangu_rounds.gin"],
            "arms": [{"name": "one_round", "params": {"RoundsConfig": {"num_rounds": 1}}}]
            + two_rounds,
        }
    )
