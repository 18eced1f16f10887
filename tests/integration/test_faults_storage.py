"""Fault battery, failed saves: a checkpoint write that fails with ENOSPC stops the run with one
message naming the path and the error, leaves the previous checkpoint intact and restorable,
keeps every line of metrics.jsonl, and a rerun resumes from that checkpoint."""

import errno
import json

import orbax.checkpoint as ocp
import pytest

from tests.helpers import tiny_run
from tinylm_jax.config import gin as config_lib
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.errors import StorageError
from tinylm_jax.train.loop import train


def config():
    return config_lib.parse(
        ["models/tiny_test.gin"],
        tiny_run(6)
        + [
            "DataConfig.max_documents = 12",
            "TrainConfig.eval_steps = 0",
            "CheckpointConfig.every_steps = 2",
        ],
    )


@pytest.mark.slow
def test_a_save_that_fails_with_enospc_keeps_the_last_checkpoint(
    tmp_path, data_dir, gin_clean, monkeypatch
):
    real_save = ocp.CheckpointManager.save

    def full_disk(self, step, *args, **kwargs):
        if step == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory / "4"))
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(StorageError) as failed:
        train(config(), tmp_path)
    message = str(failed.value)
    assert f"saving a checkpoint in {ckpt.checkpoint_dir(tmp_path)} failed at step 4" in message
    assert "No space left on device" in message and "step 2 is intact" in message
    assert ckpt.complete_steps(ckpt.checkpoint_dir(tmp_path)) == [2]
    ckpt.load_params(tmp_path, 2)  # restorable
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]

    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    train(config(), tmp_path)  # the disk has room again: resumes from step 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 3, 4, 5, 6]
    assert ckpt.complete_steps(ckpt.checkpoint_dir(tmp_path))[0] == 6
