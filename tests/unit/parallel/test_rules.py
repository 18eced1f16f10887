"""Mesh sharding: same losses on 1 and 8 devices; unshardable configs fail up front."""

import jax
import numpy as np
import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.mesh import DEFAULT_RULES, MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run
from tinylm_jax.errors import ConfigError
from tinylm_jax.parallel.mesh import make_mesh

TINY_MODEL = ["models/tiny_test.gin"]


def test_eight_devices_are_visible():
    assert jax.device_count() == 8


def test_mesh_fills_the_minus_one_axis():
    mesh = make_mesh(MeshConfig(data=-1, fsdp=2, tensor=2))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ConfigError, match="needs 12 devices"):
        make_mesh(MeshConfig(data=3, fsdp=2, tensor=2))
    with pytest.raises(ConfigError, match="only one axis"):
        make_mesh(MeshConfig(data=-1, fsdp=-1))


def test_heads_not_divisible_by_tensor_axis_fails_naming_both(gin_clean):
    config = config_lib.parse(TINY_MODEL, ["ModelConfig.n_kv_heads = 1", "MeshConfig.tensor = 2"])
    with pytest.raises(ConfigError, match=r"k_proj.*'kv_heads'.*n_kv_heads.*\('tensor',\)"):
        build_run(config)


def test_batch_not_divisible_by_data_axes_fails(gin_clean):
    config = config_lib.parse(TINY_MODEL, ["TrainConfig.batch_size = 6", "MeshConfig.data = 8"])
    with pytest.raises(ConfigError, match="batch_size.*not divisible"):
        build_run(config)


def test_params_are_sharded_by_the_rules(gin_clean):
    config = config_lib.parse(
        TINY_MODEL, ["MeshConfig.data = 2", "MeshConfig.fsdp = 2", "MeshConfig.tensor = 2"]
    )
    run = build_run(config)
    spec = run.shardings.params["layers_0"]["mlp"]["up_proj"].spec
    assert tuple(spec) == ("fsdp", "tensor")
    assert tuple(run.shardings.params["token_embed"].spec) == ("tensor", "fsdp")
    # Adam moments follow their parameters.
    mu = run.shardings.opt_state[1][0].mu["layers_0"]["mlp"]["up_proj"].spec
    assert tuple(mu) == ("fsdp", "tensor")
    assert np.prod(list(run.mesh.shape.values())) == 8


def test_tinyllama_train_step_lowers_on_a_sharded_mesh_without_allocating(gin_clean):
    """The 1.1B config's full train step traces and lowers for data=2, fsdp=2, tensor=2 from
    abstract arrays alone: shapes, shardings and the step itself, no 12 GiB of state."""
    import jax.numpy as jnp

    from tinylm_jax.engine.run import run_context
    from tinylm_jax.parallel import rules as rules_lib

    config = config_lib.parse(
        ["models/tinyllama_1_1b.gin"],
        ["MeshConfig.data = 2", "MeshConfig.fsdp = 2", "MeshConfig.tensor = 2"]
        + ["TrainConfig.batch_size = 8", "TrainConfig.seq_len = 2048"],
    )
    run = build_run(config)
    state = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        run.abstract,
        run.shardings,
    )
    batch_sharding = rules_lib.batch_sharding(run.mesh, run.rules)
    batch = {
        key: jax.ShapeDtypeStruct((8, 2048), dtype, sharding=batch_sharding)
        for key, dtype in [("inputs", jnp.int32), ("targets", jnp.int32)]
        + [("segment_ids", jnp.int32), ("positions", jnp.int32), ("weights", jnp.float32)]
    }
    with run_context(run):
        lowered = run.train_step.lower(state, batch)
    assert "train_step" in lowered.as_text()[:2000]
    # Scanned layers: a leading, unsharded layer axis on every block parameter.
    q_proj = run.shardings.params["layers"]["attn"]["q_proj"]
    assert tuple(q_proj.spec) == (None, "fsdp", "tensor", None)
    assert run.abstract.params["layers"]["attn"]["k_proj"].shape == (22, 2048, 4, 64)


def test_the_first_applicable_rule_wins_as_in_flax(gin_clean):
    """Checks resolve rules as Flax does: the first rule for a name wins, not the last."""
    base = RunConfig(
        model=ModelConfig(vocab_size=64, d_model=20, n_layers=1, n_heads=4, head_dim=8),
        train=TrainConfig(batch_size=8, seq_len=8),
        mesh=MeshConfig(data=1, fsdp=8),
    )
    first_unsharded = (("embed", None), ("embed", "fsdp")) + DEFAULT_RULES
    run = build_run(base.replace(rules=first_unsharded))  # d_model 20 is not a multiple of 8
    assert run.shardings.params["token_embed"].spec[1] is None
    with pytest.raises(ConfigError, match="logical axis 'embed'"):
        build_run(base.replace(rules=(("embed", "fsdp"), ("embed", None)) + DEFAULT_RULES))
