"""TinyHelen's curriculum (arXiv 2501.00522) through the trainer: the first stage is the
easiest 5%, a forced plateau adds 5%, a run stopped mid-stage resumes bit-exactly."""

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers import read_metrics, tiny_run, train_losses
from tinylm_jax.config import gin as config_lib
from tinylm_jax.data import pipeline, selection
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.train import loop

from .test_multiprocess_resume import params_at, steps_saved

TINYHELEN = [
    "DataConfig.max_documents = 12",
    "RoundsConfig.selection = 'tinyhelen'",
    "RoundsConfig.difficulty = 'length'",
    "RoundsConfig.advance = 'plateau'",
    "RoundsConfig.patience = 1",
    # Every eval after the first counts as no improvement: a plateau at every eval.
    "RoundsConfig.min_delta = 1e9",
    "TrainConfig.eval_every = 2",
    "CheckpointConfig.every_steps = 2",
]


def selected_ids(workdir, step: int) -> np.ndarray:
    item = ocp.StandardCheckpointer().restore(ckpt.checkpoint_dir(workdir) / str(step) / "rounds")
    return np.asarray(item["selected_ids"])


def stages(workdir) -> list[dict]:
    """The stage selection records of metrics.jsonl without their timings."""
    records = [r for r in read_metrics(workdir) if "units_selected" in r]
    return [{k: v for k, v in r.items() if "second" not in k} for r in records]


@pytest.mark.slow
def test_first_stage_is_the_easiest_five_percent_and_a_plateau_adds_five(
    tmp_path, data_dir, gin_clean
):
    config = config_lib.parse(["models/tiny_test.gin"], tiny_run(6) + TINYHELEN)
    loop.train(config, tmp_path)
    data = pipeline.prepare_data(config.data, config.train.seq_len)
    segments = np.stack([data.train[i]["segment_ids"] for i in range(len(data.train))])
    lengths = selection.record_lengths(segments)
    n = len(lengths)
    records = stages(tmp_path)
    # Evals at steps 2 (sets the best) and 4 (no improvement: a plateau); 6 is the last step.
    assert [(r["step"], r["round"], r["stage_fraction"]) for r in records] == [
        (0, 1, 0.05),
        (4, 2, 0.1),
    ]
    assert [r["units_scored"] for r in records] == [n, n]
    first = selected_ids(tmp_path, 2)
    assert abs(len(first) - 0.05 * n) <= 1 and records[0]["units_selected"] == len(first)
    # The easiest 5% by mean document length (ties broken by id, as a stable sort does).
    assert first.tolist() == sorted(np.argsort(lengths, kind="stable")[: len(first)].tolist())
    second = selected_ids(tmp_path, 4)
    assert len(second) == records[1]["units_selected"] == int(0.1 * n)
    assert set(first) <= set(second)
    rounds = {r["step"]: r["round"] for r in read_metrics(tmp_path) if "loss" in r}
    assert rounds == {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2}


@pytest.mark.slow
def test_stopped_mid_stage_resumes_bit_exactly(tmp_path, data_dir, gin_clean):
    flags = tiny_run(8) + TINYHELEN + ["RoundsConfig.difficulty = 'self_loss'"]
    config = config_lib.parse(["models/tiny_test.gin"], flags)
    reference = tmp_path / "reference"
    loop.train(config, reference)

    class Stop(Exception):
        pass

    def stop_at_7(step: int) -> None:
        if step == 7:
            raise Stop

    workdir = tmp_path / "stopped"
    with pytest.raises(Stop):
        loop.train(config, workdir, loop.TrainHooks(after_step=stop_at_7))
    assert steps_saved(workdir)[-1] == 6  # stage 3 started at step 6; step 7 is mid-stage
    loop.train(config, workdir)
    assert train_losses(workdir) == train_losses(reference)
    assert stages(workdir) == stages(reference)
    assert [r["round"] for r in stages(reference)] == [1, 2, 3]
    np.testing.assert_array_equal(selected_ids(workdir, 8), selected_ids(reference, 8))
    for a, b in zip(params_at(workdir, 8), params_at(reference, 8), strict=True):
        assert np.array_equal(a, b)
