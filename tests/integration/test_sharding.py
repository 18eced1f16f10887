"""Mesh sharding: same losses on 1 and 8 devices; unshardable configs fail up front."""

import pytest

from tests.helpers import tiny_run, train_losses
from tinylm_jax.config import gin as config_lib
from tinylm_jax.train.loop import train

TINY_MODEL = ["models/tiny_test.gin"]


def test_one_and_eight_device_runs_give_the_same_losses(tmp_path, data_dir, gin_clean):
    losses = {}
    for name, mesh in [
        ("one", ["MeshConfig.num_devices = 1", "MeshConfig.data = 1"]),
        ("eight", ["MeshConfig.data = 2", "MeshConfig.fsdp = 2", "MeshConfig.tensor = 2"]),
    ]:
        train(config_lib.parse(TINY_MODEL, tiny_run(steps=5) + mesh), tmp_path / name)
        losses[name] = train_losses(tmp_path / name)
    assert sorted(losses["one"]) == [1, 2, 3, 4, 5]
    for step, loss in losses["one"].items():
        assert losses["eight"][step] == pytest.approx(loss, rel=1e-5), step
