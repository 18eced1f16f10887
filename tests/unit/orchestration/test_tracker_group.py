"""Sweep and ladder arms carry their sweep / recipe as `TrainConfig.tracker_group` (their W&B
group) on the `tinylm train` command line, outside the arm's own gin."""

import ml_collections

from tinylm_jax.orchestration import grid, ladder
from tinylm_jax.orchestration.arm import Arm
from tinylm_jax.orchestration.sweep_state import Trial

GROUP_FLAG = "--gin_param=TrainConfig.tracker_group = 'sweep_x'"


def test_arm_group_becomes_the_tracker_group():
    assert Arm("a", gin_params=("TrainConfig.seed = 1",), group="sweep_x").train_args("w") == (
        "train",
        "--workdir=w",
        "--gin_param=TrainConfig.seed = 1",
        GROUP_FLAG,
    )
    assert not any("tracker_group" in a for a in Arm("a").train_args("w"))


def test_sweep_trial_and_ladder_arms_are_grouped(tmp_path):
    spec = ml_collections.ConfigDict({"name": "sweep_x", "grid": {"TrainConfig": {"seed": [1]}}})
    (arm,) = grid.expand(spec)
    assert arm.group == "sweep_x" and GROUP_FLAG in arm.command(tmp_path / "sweep_x" / arm.name)
    trial = Trial(0, "a", "a/t000", (0.5,), {}, (), ("TrainConfig.seed = 1",), 10)
    assert GROUP_FLAG in trial.command(tmp_path / "sweep_x")
    rungs = ladder.pangu_ladder(tmp_path / "ladder", "tiny").arms.values()
    assert {a.group for a in rungs} == {"pangu_ladder_tiny"}
