"""Parameter inheritance: identity, planted units, GQA grouping, learnable masks, end to end."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from tests.support.inherit import CHILD, ONE_DEVICE, PARENT, TRAIN
from tinylm_jax.config.inherit import WIDTH_METRICS, InheritConfig
from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.engine.run import build_run
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.parallel.batch import global_batch_to_devices
from tinylm_jax.recipes.pangu import inherit as inherit_lib
from tinylm_jax.recipes.pangu import pruning


def run_for(model: ModelConfig, mesh: MeshConfig = ONE_DEVICE, **inherit) -> RunConfig:
    config = RunConfig(model=model, train=TRAIN, mesh=mesh, inherit=InheritConfig(**inherit))
    return config, build_run(config)


def init_params(model: ModelConfig, seed: int = 0, std: float = 0.5) -> dict:
    params = Transformer(model.replace(init_std=std)).init(
        jax.random.key(seed), jnp.zeros((1, 8), jnp.int32)
    )["params"]
    return jax.device_get(nn.unbox(params))


def synthetic_batches(run, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, L = TRAIN.batch_size, TRAIN.seq_len
    while True:
        tokens = rng.integers(0, run.config.model.vocab_size, (B, L + 1))
        batch = {
            "inputs": tokens[:, :-1],
            "targets": tokens[:, 1:],
            "positions": np.tile(np.arange(L), (B, 1)),
            "segment_ids": np.ones((B, L), np.int32),
            "weights": np.ones((B, L), np.float32),
        }
        yield global_batch_to_devices(batch, run.mesh, run.rules)


def derive(parent_cfg, host, child_cfg, metric, layers=None, **inherit):
    """(child params, selection, extra report) as `inherit` derives them, on synthetic data."""
    layers = layers or tuple(range(child_cfg.n_layers))
    cut = parent_cfg.replace(n_layers=len(layers))
    config, run = run_for(cut, width_metric=metric, calibration_batches=2, mask_steps=4, **inherit)
    config = config.replace(model=child_cfg)
    cut_host = pruning.take_layers(host, layers)
    params = jax.device_put(cut_host, run.shardings.params)
    importance, extra, trained = inherit_lib.width_importance(
        run, params, synthetic_batches(run), config
    )
    assert (trained is None) == (metric != "learnable_mask_joint")
    selection = pruning.select(importance, layers, cut, child_cfg)
    return pruning.prune_params(cut_host, cut, child_cfg, selection), selection, extra


def logits(model: ModelConfig, params: dict, seed: int = 1) -> np.ndarray:
    tokens = np.random.default_rng(seed).integers(0, model.vocab_size, (2, 16))
    return np.asarray(Transformer(model).apply({"params": params}, tokens)[0])


def flat(params: dict) -> dict:
    return traverse_util.flatten_dict(params, sep="/")


# The joint masks train the weights too: the child is not the parent (tested below).
@pytest.mark.parametrize("metric", [m for m in WIDTH_METRICS if m != "learnable_mask_joint"])
def test_identity_gives_the_parents_logits_exactly(metric):
    host = init_params(PARENT)
    child, _, _ = derive(PARENT, host, PARENT, metric, layers=(0, 1, 2))
    for path, value in flat(host).items():
        np.testing.assert_array_equal(flat(child)[path], value, err_msg=path)
    np.testing.assert_array_equal(logits(PARENT, child), logits(PARENT, host))


def test_scanned_parent_and_child_layouts():
    scanned = PARENT.replace(scan_layers=True)
    host = init_params(scanned)
    unrolled = pruning.unstack_layers(host, PARENT.n_layers)
    assert "layers" not in unrolled and unrolled["layers_2"]["attn"]["q_proj"].shape == (32, 8, 8)
    child, _, _ = derive(PARENT, unrolled, scanned, "l1", layers=(0, 1, 2))
    for path, value in flat(host).items():
        np.testing.assert_array_equal(flat(child)[path], value, err_msg=path)


def planted_parent(seed: int = 0):
    """PARENT whose units outside (hidden, groups, ffn) and whose layer 1 are zero."""
    rng = np.random.default_rng(seed)
    hidden = np.sort(rng.choice(32, 16, replace=False))
    groups = np.array([[0, 3], [1, 2], [2, 3]])  # kept kv groups per layer (layer 1 unused)
    ffn = np.stack([np.sort(rng.choice(64, 32, replace=False)) for _ in range(3)])
    host = init_params(PARENT, seed)
    off_D = np.ones(32, bool)
    off_D[hidden] = False
    p = {k: np.array(v) for k, v in flat(host).items()}
    p["token_embed"][:, off_D] = 0
    p["lm_head"][off_D] = 0
    p["final_norm/scale"][off_D] = 0
    for i in range(3):
        pre = f"layers_{i}/"
        off_K = np.ones(4, bool)
        off_K[groups[i]] = False
        off_N = np.repeat(off_K, 2)
        off_F = np.ones(64, bool)
        off_F[ffn[i]] = False
        for name in ("attn_norm/scale", "mlp_norm/scale"):
            p[pre + name][off_D] = 0
        for name in ("attn/q_proj", "attn/k_proj", "attn/v_proj", "mlp/gate_proj", "mlp/up_proj"):
            p[pre + name][off_D] = 0
        p[pre + "attn/q_proj"][:, off_N] = 0
        p[pre + "attn/k_proj"][:, off_K] = 0
        p[pre + "attn/v_proj"][:, off_K] = 0
        p[pre + "attn/o_proj"][off_N] = 0
        p[pre + "attn/o_proj"][..., off_D] = 0
        p[pre + "mlp/gate_proj"][:, off_F] = 0
        p[pre + "mlp/up_proj"][:, off_F] = 0
        p[pre + "mlp/down_proj"][off_F] = 0
        p[pre + "mlp/down_proj"][:, off_D] = 0
    # Layer 1 writes nothing into the residual stream: the block is the identity.
    p["layers_1/attn/o_proj"][:] = 0
    p["layers_1/mlp/down_proj"][:] = 0
    return traverse_util.unflatten_dict(p, sep="/"), hidden, groups, ffn


@pytest.mark.parametrize("metric", ["l1", "l2", "taylor", "activation"])
def test_planted_units_are_kept_and_the_pruned_parent_keeps_its_logits(metric):
    host, hidden, groups, ffn = planted_parent()
    child, selection, _ = derive(PARENT, host, CHILD, metric, layers=(0, 2))
    np.testing.assert_array_equal(selection.hidden, hidden)
    np.testing.assert_array_equal(selection.kv_groups[:, :, 0], groups[[0, 2]])
    np.testing.assert_array_equal(selection.ffn, ffn[[0, 2]])
    np.testing.assert_allclose(logits(CHILD, child), logits(PARENT, host), rtol=1e-5, atol=1e-4)


def test_block_influence_drops_the_identity_block():
    host, *_ = planted_parent()
    _, run = run_for(PARENT)
    from tinylm_jax.recipes.pangu import importance

    params = jax.device_put(host, run.shardings.params)
    batches = [next(synthetic_batches(run))]
    influence_L = importance.block_influence(run, params, batches)
    assert influence_L[1] < 1e-6 < min(influence_L[0], influence_L[2])
    assert pruning.select_layers("block_influence", 3, 2, influence_L=influence_L) == (0, 2)


def _check_consistency(parent_cfg, host, child_cfg, child, sel) -> None:
    """Every child tensor is the parent's selected slice (times the documented rescaling)."""
    p, c = flat(host), flat(child)
    d_ = sel.hidden
    norm = np.sqrt(parent_cfg.d_model / child_cfg.d_model)
    q_scale = np.sqrt(child_cfg.resolved_head_dim / parent_cfg.resolved_head_dim)
    g_p = parent_cfg.n_heads // parent_cfg.resolved_n_kv_heads
    g_c = child_cfg.n_heads // child_cfg.resolved_n_kv_heads
    assert jax.tree_util.tree_map(np.shape, child) == jax.tree_util.tree_map(
        np.shape, init_params(child_cfg)
    )
    np.testing.assert_array_equal(c["token_embed"], p["token_embed"][:, d_])
    np.testing.assert_array_equal(c["lm_head"], p["lm_head"][d_])
    np.testing.assert_allclose(c["final_norm/scale"], p["final_norm/scale"][d_] * norm)
    for i, parent_layer in enumerate(sel.layers):
        src = lambda name, j=parent_layer: p[f"layers_{j}/{name}"]  # noqa: E731
        dst = lambda name, j=i: c[f"layers_{j}/{name}"]  # noqa: E731
        heads, kv, h_, f_ = sel.heads[i], sel.kv_groups[i], sel.head_dim[i], sel.ffn[i]
        # Each child group's query heads come from the parent groups pooled into its kv head.
        for group, members in enumerate(kv):
            assert set(heads[group * g_c : (group + 1) * g_c] // g_p) <= set(members)
        for norm_name in ("attn_norm/scale", "mlp_norm/scale"):
            np.testing.assert_allclose(dst(norm_name), src(norm_name)[d_] * norm)
        np.testing.assert_allclose(
            dst("attn/q_proj"), src("attn/q_proj")[d_][:, heads][:, :, h_] * q_scale, rtol=1e-6
        )
        for name in ("attn/k_proj", "attn/v_proj"):
            pooled = src(name)[d_][:, kv][..., h_].mean(axis=2)
            np.testing.assert_allclose(dst(name), pooled, rtol=1e-6)
        np.testing.assert_array_equal(dst("attn/o_proj"), src("attn/o_proj")[heads][:, h_][..., d_])
        for name in ("mlp/gate_proj", "mlp/up_proj"):
            np.testing.assert_array_equal(dst(name), src(name)[d_][:, f_])
        np.testing.assert_array_equal(dst("mlp/down_proj"), src("mlp/down_proj")[f_][:, d_])


@pytest.mark.parametrize(
    "parent_changes,child_changes,merged",
    [
        ({}, {}, 1),  # GQA 8/4 -> 4/2: whole groups with their query heads
        ({"n_heads": 4, "n_kv_heads": 4}, {"n_heads": 4, "n_kv_heads": 2}, 2),  # MHA -> GQA
        ({}, {"n_heads": 4, "n_kv_heads": 1, "head_dim": 4}, 2),  # MQA, head_dim 8 -> 4
    ],
)
def test_grouping_and_residual_consistency(parent_changes, child_changes, merged):
    parent_cfg = PARENT.replace(**parent_changes)
    child_cfg = CHILD.replace(**child_changes)
    host = init_params(parent_cfg)
    child, sel, _ = derive(parent_cfg, host, child_cfg, "l2", layers=(0, 2))
    _check_consistency(parent_cfg, host, child_cfg, child, sel)
    assert sel.kv_groups.shape == (2, child_cfg.n_kv_heads, merged)
    if "head_dim" in child_changes:  # whole rotary pairs (j, j + H/2)
        np.testing.assert_array_equal(sel.head_dim[:, 2:], sel.head_dim[:, :2] + 4)


def test_user_errors_name_the_fix():
    with pytest.raises(ConfigError, match="larger than the parent in d_model=64"):
        pruning.group_merge(PARENT, CHILD.replace(d_model=64))
    grouped = PARENT.replace(n_heads=6, n_kv_heads=3)
    with pytest.raises(ConfigError, match="incompatible head grouping"):
        pruning.group_merge(grouped, grouped.replace(n_kv_heads=2))
    with pytest.raises(ConfigError, match="width_metric='magnitude' is not one of"):
        InheritConfig(width_metric="magnitude")
    with pytest.raises(ConfigError, match="3 distinct parent layer indices"):
        pruning.select_layers("explicit", 4, 3, (0, 0, 1))
    assert pruning.select_layers("ends", 6, 3) == (0, 1, 5)
    assert pruning.select_layers("uniform", 7, 3) == (0, 3, 6)


def learn_masks(mesh: MeshConfig, steps: int, metric: str = "learnable_mask", **inherit):
    """(selection, importance, report[, trained]) of learnable masks on PARENT's layers 0, 2."""
    cut = PARENT.replace(n_layers=2)
    config, run = run_for(cut, mesh, width_metric=metric, mask_steps=steps, **inherit)
    params = jax.device_put(pruning.take_layers(init_params(PARENT), (0, 2)), run.shardings.params)
    importance, report, trained = inherit_lib.width_importance(
        run, params, synthetic_batches(run), config.replace(model=CHILD)
    )
    selection = pruning.select(importance, (0, 2), cut, CHILD)
    return (selection, importance, report) + (() if trained is None else (trained,))


@pytest.mark.slow
def test_joint_masks_train_the_weights_the_child_inherits():
    host = pruning.take_layers(init_params(PARENT), (0, 2))
    _, _, _, trained = learn_masks(
        ONE_DEVICE, 20, "learnable_mask_joint", mask_weight_learning_rate=1e-2
    )
    # Every weight matrix moved (Adam steps of ~1e-2), and the gates are folded in: the
    # hidden channels the masks close are scaled down all along the residual stream.
    for path, value in flat(host).items():
        assert not np.array_equal(flat(trained)[path], value), path
    # At a zero weight learning rate (in the limit), only the folded gates change the weights.
    _, importance, _, still = learn_masks(
        ONE_DEVICE, 20, "learnable_mask_joint", mask_weight_learning_rate=1e-30
    )
    ratio = flat(still)["token_embed"] / flat(host)["token_embed"]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-5)
    assert np.all((ratio >= 0) & (ratio <= 1))


def test_learnable_mask_reaches_the_target_sizes():
    selection, _, report = learn_masks(MeshConfig(data=1, fsdp=8), steps=100)
    assert selection.hidden.shape == (16,) and selection.heads.shape == (2, 4)
    assert selection.ffn.shape == (2, 32)
    # The Lagrangian brings the expected sizes from the parent's (32, 8, 64) to the targets.
    expected = report["expected_sizes"]
    assert report["target_sizes"] == {"hidden": 16, "heads": 4, "ffn": 32}
    assert abs(expected["hidden"] - 16) < 1.0, expected
    for kind, target in (("heads", 4), ("ffn", 32)):
        assert all(abs(s - target) < 0.1 * target for s in expected[kind]), expected


def test_learnable_mask_on_8_devices_matches_1_device():
    (sel8, imp8, _), (sel1, imp1, _) = (
        learn_masks(mesh, steps=20) for mesh in (MeshConfig(data=1, fsdp=8), ONE_DEVICE)
    )
    for field in ("hidden", "heads", "ffn", "kv_groups"):
        np.testing.assert_array_equal(getattr(sel8, field), getattr(sel1, field))
    # Reduction order differs across meshes; Adam amplifies it a little.
    np.testing.assert_allclose(imp8.ffn, imp1.ffn, atol=1e-3)


PARENT_GIN = ["ModelConfig.n_layers = 3", "ModelConfig.d_model = 48", "ModelConfig.ffn_dim = 128"]


TINY = "--gin_file=models/tiny_test.gin"  # the child: d_model 32 (head_dim 8), 2 layers


E2E_STEPS = 30


CHILD_STEPS = 12
