"""PanGu-π Pro's sampling rate r (arXiv 2402.02791, section "Multiple-Round Training"): two
rounds whose second replays r ∈ {0.25, 0.5, 0.75} of the batches (the paper's unit; its
released rule draws batches by softmax of their losses), each with the learning-rate schedule
run once over the whole run or restarted per round (whether the paper restarts it is not
known), against one round, at the same total steps.
Equal rounds of 200 steps replay a small r's few batches many times (r = 0.25: 44 batches,
about 4.5 passes), so the `_one_pass` arms give the second round one pass over its batches
(r × the 176 batches of this experiment's train split) and the first round the rest.
Run: tinylm sweep run --spec=sweeps/pangu_rounds_rate.py; then `tinylm sweep report`.
"""

import ml_collections

TRAIN_BATCHES = 176  # batches of 16 x 128 in experiments/pangu_rounds.gin's train split


def get_config() -> ml_collections.ConfigDict:
    arms = [{"name": "one_round", "params": {"RoundsConfig": {"num_rounds": 1}}}]
    for rate in (0.25, 0.5, 0.75):
        for restart in (False, True):
            rounds = {"unit": "batch", "sampling_rate": rate, "restart_schedule": restart}
            name = f"r{int(rate * 100)}" + ("_restart" if restart else "")
            arms.append({"name": name, "params": {"RoundsConfig": rounds}})
        replayed = int(rate * TRAIN_BATCHES)
        one_pass = {
            "unit": "batch",
            "sampling_rate": rate,
            "round_steps": [400 - replayed, replayed],
        }
        arms.append({"name": f"r{int(rate * 100)}_one_pass", "params": {"RoundsConfig": one_pass}})
    return ml_collections.ConfigDict(
        {"name": "pangu_rounds_rate", "gin_files": ["experiments/pangu_rounds.gin"], "arms": arms}
    )
