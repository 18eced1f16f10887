"""Checkpoints in-process: resharding restores, damaged checkpoints, init_from, numerical faults,
and the data iterator state they carry."""

import re
import shutil
from pathlib import Path

import gin
import jax
import numpy as np
import pytest

from tests.helpers import tiny_run
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.train import CheckpointConfig
from tinylm_jax.data import pipeline
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import build_run
from tinylm_jax.errors import ConfigError
from tinylm_jax.train.loop import train

TINY_MODEL = ["models/tiny_test.gin"]
FSDP8 = ["MeshConfig.data = 1", "MeshConfig.fsdp = 8"]
ONE_DEVICE = ["MeshConfig.num_devices = 1", "MeshConfig.fsdp = 1"]
QUIET = ["TrainConfig.eval_steps = 0", "peak_flops_per_device.override = 1e9"]


def parse(*params: str, steps: int = 4) -> config_lib.RunConfig:
    """The tiny run on 8 devices, fsdp=8 (one mesh for all, so compiled code is reused)."""
    return config_lib.parse(
        TINY_MODEL,
        tiny_run(steps=steps) + QUIET + FSDP8 + ["CheckpointConfig.every_steps = 2", *params],
    )


def restore(workdir: Path, *mesh: str, data_iterator=None, set_aside: bool = False):
    """(run, state, metadata) of `workdir`'s newest good checkpoint on the mesh `mesh`."""
    run = build_run(parse(*mesh))
    manager = ckpt.make_manager(workdir, run.config.checkpoint)
    restored = ckpt.restore_latest(
        manager, run.abstract, run.shardings, data_iterator, set_aside_damaged=set_aside
    )
    manager.close()
    return run, *(restored[:2] if restored else (None, None))


def host(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def assert_bitwise_equal(a, b) -> None:
    for x, y in zip(host(a), host(b), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    """A 4-step run on 8 devices, fsdp=8 (params sharded 8 ways), checkpoints at 2 and 4."""
    workdir = tmp_path_factory.mktemp("ckpt") / "run"
    train(parse(), workdir)
    gin.clear_config()
    return workdir


def test_metadata_and_retention(trained, gin_clean):
    assert sorted(int(p.name) for p in (trained / "checkpoints").iterdir()) == [2, 4]
    _, state, metadata = restore(trained)
    assert int(state.step) == 4 and metadata["step"] == 4
    assert metadata["process_count"] == 1
    assert metadata["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    assert "MeshConfig.fsdp = 8" in metadata["gin_config"]
    assert metadata["tokenizer_fingerprint"]


def test_restore_8_devices_fsdp8_onto_1_device(trained, gin_clean):
    _, reference, _ = restore(trained)
    assert reference.params["token_embed"].addressable_shards[0].data.shape == (512, 4)
    _, one, _ = restore(trained, *ONE_DEVICE)
    assert {d for x in jax.tree_util.tree_leaves(one) for d in x.devices()} == {jax.devices()[0]}
    assert_bitwise_equal(one, reference)


def test_restore_1_device_onto_4_devices_fsdp4(trained, gin_clean, tmp_path):
    _, one, metadata = restore(trained, *ONE_DEVICE)
    manager = ckpt.make_manager(tmp_path, CheckpointConfig(async_save=False))
    ckpt.save(manager, one, None, metadata)  # a checkpoint written from 1 device
    manager.close()
    run, four, _ = restore(tmp_path, "MeshConfig.num_devices = 4", "MeshConfig.fsdp = 4")
    embed = four.params["token_embed"]
    assert embed.sharding == run.shardings.params["token_embed"] and len(embed.devices()) == 4
    assert embed.addressable_shards[0].data.shape == (512, 8)  # d_model 32 over fsdp=4
    assert_bitwise_equal(four, one)


def test_resumed_data_iterator_yields_the_uninterrupted_batches(trained, gin_clean):
    data = pipeline.prepare_data(parse().data, 32)
    uninterrupted = pipeline.make_train_iterator(data, 8, seed=0)
    expected = [next(uninterrupted)["ids"] for _ in range(6)][4:]
    resumed = pipeline.make_train_iterator(data, 8, seed=0)
    _, state, _ = restore(trained, data_iterator=resumed)
    assert int(state.step) == 4
    for ids in expected:
        np.testing.assert_array_equal(next(resumed)["ids"], ids)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_latest_checkpoint_falls_back_and_training_recovers(
    trained, gin_clean, tmp_path, capsys
):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    for path in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])  # truncated array data
    _, state, _ = restore(workdir)
    assert int(state.step) == 2
    assert f"damaged checkpoint skipped: {workdir / 'checkpoints' / '4'}" in capsys.readouterr().out

    train(parse(), workdir)  # sets step 4 aside, resumes from 2, saves 4 again
    assert [p.name.split("-")[0] for p in (workdir / "damaged_checkpoints").iterdir()] == ["4"]
    _, resumed, _ = restore(workdir)
    _, original, _ = restore(trained)
    assert int(resumed.step) == 4
    assert_bitwise_equal(resumed, original)


def test_checkpoint_of_another_model_is_a_config_error_not_damage(trained, gin_clean):
    with pytest.raises(
        ConfigError,
        match=r"does not match.*params/final_norm/scale: checkpoint \(32,\) vs run \(64,\)",
    ):
        restore(trained, "ModelConfig.d_model = 64", set_aside=True)
    assert not (trained / "damaged_checkpoints").exists()


def test_load_params_reads_only_the_requested_subtrees(trained, gin_clean):
    params, step = ckpt.load_params(trained, prefixes=["layers_1/mlp", "token_embed"])
    assert step == 4
    assert set(params) == {"layers_1", "token_embed"} and set(params["layers_1"]) == {"mlp"}
    assert isinstance(params["token_embed"], np.ndarray)
    assert params["token_embed"].shape == (512, 32)
    with pytest.raises(ConfigError, match="no params under.*'layers_7'"):
        ckpt.load_params(trained, prefixes=["layers_7"])


def test_mismatched_shapes_are_listed(trained, gin_clean):
    run = build_run(parse())
    source, _ = ckpt.load_params(trained)
    mapping = {"layers_0/mlp/gate_proj": "layers_0/attn/q_proj", "layers_1/mlp": "layers_0/attn"}
    with pytest.raises(ConfigError) as error:
        ckpt.inherit_params(run.abstract.params, source, mapping)
    message = str(error.value)
    assert "layers_0/mlp/gate_proj (32, 96) <- layers_0/attn/q_proj (32, 4, 8): shapes differ" in (
        message
    )
    assert "layers_1/mlp/up_proj <- layers_0/attn/up_proj: not in the source" in message


def test_init_from_copies_the_mapped_params(trained, gin_clean, tmp_path):
    parent, _ = ckpt.load_params(trained)
    config = parse(
        f"CheckpointConfig.init_from = '{trained}'",
        "CheckpointConfig.init_mapping = {'layers_0': 'layers_1', 'token_embed': 'token_embed'}",
        "OptimizerConfig.learning_rate = 1e-30",  # so one step leaves the params as they are
        steps=1,
    )
    train(config, tmp_path / "child")
    child, _ = ckpt.load_params(tmp_path / "child")
    assert_bitwise_equal(child["layers_0"], parent["layers_1"])
    assert_bitwise_equal(child["token_embed"], parent["token_embed"])
    assert not np.array_equal(
        child["layers_1"]["mlp"]["up_proj"], parent["layers_1"]["mlp"]["up_proj"]
    )
    _, _, metadata = restore(tmp_path / "child")
    assert metadata["init_from"]["step"] == 4 and len(metadata["init_from"]["params"]) == 10


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(gin_clean, data_dir, tmp_path):
    config = parse(
        "OptimizerConfig.learning_rate = 1e30", "CheckpointConfig.every_steps = 1", steps=3
    )
    with pytest.raises(FloatingPointError, match="non-finite loss or gradients at step") as error:
        train(config, tmp_path)
    bad = int(re.search(r"at step (\d+)", str(error.value)).group(1))
    assert "Last good checkpoint: step" in str(error.value)
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert saved == list(range(1, bad)), (saved, bad)
    for step in saved:
        params, _ = ckpt.load_params(tmp_path, step)
        assert all(np.isfinite(x).all() for x in host(params))


def test_a_transient_error_propagates_and_sets_nothing_aside(
    trained, gin_clean, tmp_path, monkeypatch
):
    """Only unreadable files are damage: out of memory (or a transient I/O error) while
    restoring must not move good checkpoints away."""
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)

    def out_of_memory(self, *args, **kwargs):
        raise MemoryError("RESOURCE_EXHAUSTED: out of memory while restoring")

    monkeypatch.setattr(ckpt.ocp.CheckpointManager, "restore", out_of_memory)
    with pytest.raises(MemoryError):
        restore(workdir, set_aside=True)
    assert not (workdir / "damaged_checkpoints").exists()
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [2, 4]


def test_a_dtype_change_is_reported(trained, gin_clean):
    with pytest.raises(ConfigError, match=r"final_norm/scale: checkpoint float32 vs run bfloat16"):
        restore(trained, "ModelConfig.param_dtype = 'bfloat16'", set_aside=True)
    assert not (trained / "damaged_checkpoints").exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_load_params_falls_back_past_a_damaged_latest_step(trained, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    for path in (workdir / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])
    params, step = ckpt.load_params(workdir)
    assert step == 2 and params["token_embed"].shape == (512, 32)
    assert "damaged checkpoint skipped" in capsys.readouterr().out
