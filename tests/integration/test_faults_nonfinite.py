"""Fault battery, loss spikes: `TrainConfig.on_nonfinite = 'rollback'` with a NaN injected
through `TrainHooks.edit_state` restores the last good checkpoint, skips batches, records the
rollback in the checkpoint, stays bounded, and a run interrupted after a rollback resumes to the
same params as an uninterrupted one."""

import json

import jax
import numpy as np
import pytest

from tests.fault_runner import nan_after
from tests.helpers import read_metrics, tiny_run, train_losses
from tinylm_jax.config import gin as config_lib
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.train.loop import TrainHooks, train
from tinylm_jax.train.metrics import NonFiniteError

SKIP = 3


def rollback_config(*extra: str):
    return config_lib.parse(
        ["models/tiny_test.gin"],
        tiny_run(8)
        + [
            "DataConfig.max_documents = 12",
            "TrainConfig.eval_steps = 0",
            "TrainConfig.on_nonfinite = 'rollback'",
            f"TrainConfig.rollback_skip_batches = {SKIP}",
            "CheckpointConfig.every_steps = 2",
            "CheckpointConfig.keep = 10",
            *extra,
        ],
    )


def metadata_at(workdir, step: int) -> dict:
    return json.loads(
        (ckpt.checkpoint_dir(workdir) / str(step) / "metadata" / "metadata").read_text()
    )


def params_at(workdir, step: int) -> list[np.ndarray]:
    params, _ = ckpt.load_params(workdir, step)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory, data_dir):
    """8 steps whose params turn NaN after step 5: the NaN loss of step 6 rolls back to 4."""
    import gin

    gin.clear_config()
    workdir = tmp_path_factory.mktemp("rollback") / "run"
    train(rollback_config(), workdir, TrainHooks(edit_state=nan_after(5)))
    return workdir


@pytest.mark.slow
def test_a_nan_rolls_back_to_the_last_checkpoint_skips_batches_and_finishes(rolled_back):
    (event,) = [r for r in read_metrics(rolled_back) if "rollback_bad_step" in r]
    assert event["step"] == 4 and event["rollback_bad_step"] == 6
    assert event["rollback_skipped_batches"] == SKIP
    losses = train_losses(rolled_back)
    assert sorted(losses) == list(range(1, 9)) and all(np.isfinite(list(losses.values())))
    history = metadata_at(rolled_back, 8)["rollbacks"]["history"]
    assert history == [
        {"bad_step": 6, "detected_step": 6, "restored_step": 4, "skipped_batches": SKIP}
    ]
    assert metadata_at(rolled_back, 4)["rollbacks"]["history"] == []  # saved before the spike
    assert all(np.isfinite(x).all() for x in params_at(rolled_back, 8))


@pytest.mark.slow
def test_rollbacks_are_bounded(tmp_path, data_dir, gin_clean):
    config = rollback_config("TrainConfig.max_rollbacks = 0")
    with pytest.raises(NonFiniteError, match="max_rollbacks=0 rollbacks were already made"):
        train(config, tmp_path, TrainHooks(edit_state=nan_after(5)))
    assert max(ckpt.complete_steps(ckpt.checkpoint_dir(tmp_path))) == 4


class Crash(Exception):
    """A process dying after step 7 (no save at 7)."""


@pytest.mark.slow
def test_a_run_interrupted_after_a_rollback_resumes_like_an_uninterrupted_one(
    rolled_back, tmp_path, gin_clean
):
    def crash(step: int) -> None:
        if step == 7:
            raise Crash

    workdir = tmp_path / "run"
    with pytest.raises(Crash):
        train(rollback_config(), workdir, TrainHooks(after_step=crash, edit_state=nan_after(5)))
    assert max(ckpt.complete_steps(ckpt.checkpoint_dir(workdir))) == 6
    assert metadata_at(workdir, 6)["rollbacks"]["history"][0]["skipped_batches"] == SKIP
    train(rollback_config(), workdir)  # resumes at 6, past the skipped batches; no NaN now
    assert train_losses(workdir) == train_losses(rolled_back)
    for a, b in zip(params_at(workdir, 8), params_at(rolled_back, 8), strict=True):
        assert np.array_equal(a, b)
