"""PanGu-π Pro's sampling rate r (arXiv 2402.02791, section "Multiple-Round Training"): two
rounds whose second replays r ∈ {0.25, 0.5, 0.75} of the batches (the paper's unit; its
released rule draws batches by softmax of their losses), each with the learning-rate schedule
run once over the whole run or restarted per round (whether the paper restarts it is not
known), against one round, at the same total steps.
Run: tinylm sweep run --spec=sweeps/pangu_rounds_rate.py; then `tinylm sweep report`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    arms = [{"name": "one_round", "params": {"RoundsConfig": {"num_rounds": 1}}}]
    for rate in (0.25, 0.5, 0.75):
        for restart in (False, True):
            rounds = {"unit": "batch", "sampling_rate": rate, "restart_schedule": restart}
            name = f"r{int(rate * 100)}" + ("_restart" if restart else "")
            arms.append({"name": name, "params": {"RoundsConfig": rounds}})
    return ml_collections.ConfigDict(
        {"name": "pangu_rounds_rate", "gin_files": ["experiments/pangu_rounds.gin"], "arms": arms}
    )
