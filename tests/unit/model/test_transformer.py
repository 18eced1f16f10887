"""Model behaviour: causality, GQA ≡ MHA with repeated heads, scan ≡ unrolled, KV cache."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.model.transformer import Transformer, init_kv_cache

BASE = ModelConfig(
    vocab_size=97, d_model=32, n_layers=2, n_heads=4, ffn_dim=64, max_seq_len=64, init_std=0.2
)


def init(cfg: ModelConfig, length: int = 12):
    model = Transformer(cfg)
    params = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, length), jnp.int32))["params"])
    return model, params


def logits(model, params, tokens, **kw):
    return model.apply({"params": params}, tokens, **kw)[0]


@pytest.mark.parametrize(
    "changes",
    [{}, {"n_kv_heads": 1}, {"scan_layers": True}, {"tie_embeddings": True, "activation": "gelu"}],
)
def test_changing_token_t_never_changes_earlier_logits(changes):
    model, params = init(BASE.replace(**changes))
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, 97)
    base = logits(model, params, tokens)
    for t in (0, 5, 11):
        changed = tokens.at[:, t].set((tokens[:, t] + 1) % 97)
        out = logits(model, params, changed)
        np.testing.assert_array_equal(out[:, :t], base[:, :t])
        assert not np.allclose(out[:, t:], base[:, t:])


def test_gqa_with_repeated_kv_heads_equals_mha():
    gqa_model, gqa = init(BASE.replace(n_kv_heads=2))
    mha_model, _ = init(BASE.replace(n_kv_heads=4))
    mha = jax.tree_util.tree_map(lambda x: x, gqa)
    for i in range(BASE.n_layers):
        attn = mha[f"layers_{i}"]["attn"]
        for name in ("k_proj", "v_proj"):
            attn[name] = jnp.repeat(gqa[f"layers_{i}"]["attn"][name], 2, axis=1)
    tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, 97)
    np.testing.assert_allclose(
        logits(gqa_model, gqa, tokens), logits(mha_model, mha, tokens), atol=1e-5
    )


def test_explicit_n_kv_heads_equal_to_heads_is_mha():
    a_model, a = init(BASE)
    b_model, _ = init(BASE.replace(n_kv_heads=BASE.n_heads))
    tokens = jax.random.randint(jax.random.key(3), (1, 12), 0, 97)
    np.testing.assert_array_equal(logits(a_model, a, tokens), logits(b_model, a, tokens))


@pytest.mark.parametrize("remat", ["none", "full", "dots_saveable"])
def test_scan_equals_unrolled(remat):
    unrolled_model, unrolled = init(BASE.replace(remat=remat))
    scanned_model, _ = init(BASE.replace(scan_layers=True, remat=remat))
    stacked = {k: v for k, v in unrolled.items() if not k.startswith("layers_")}
    stacked["layers"] = jax.tree_util.tree_map(
        lambda *xs: jnp.stack(xs), *[unrolled[f"layers_{i}"] for i in range(BASE.n_layers)]
    )
    tokens = jax.random.randint(jax.random.key(4), (2, 12), 0, 97)
    np.testing.assert_allclose(
        logits(unrolled_model, unrolled, tokens), logits(scanned_model, stacked, tokens), atol=1e-5
    )
    grads = jax.grad(lambda p: logits(scanned_model, p, tokens).sum())(stacked)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_decoding_matches_full_forward(scan):
    cfg = BASE.replace(n_kv_heads=2, scan_layers=scan)
    model, params = init(cfg)
    tokens = jax.random.randint(jax.random.key(5), (2, 10), 0, 97)
    full = logits(model, params, tokens)
    cache = init_kv_cache(cfg, 2, 10)
    prefix, cache = model.apply(
        {"params": params}, tokens[:, :4], kv_cache=cache, cache_index=jnp.int32(0)
    )
    steps = [prefix]
    for t in range(4, 10):
        out, cache = model.apply(
            {"params": params}, tokens[:, t : t + 1], kv_cache=cache, cache_index=jnp.int32(t)
        )
        steps.append(out)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5)


def test_packed_documents_are_isolated_by_default():
    """Packing restarts positions at each document, so by default attention stays inside it:
    a packed document's logits equal those of the document alone."""
    assert ModelConfig().document_attention
    model, params = init(BASE)
    tokens = jax.random.randint(jax.random.key(6), (1, 12), 0, 97)
    segments = jnp.array([[1] * 6 + [2] * 6])
    positions = jnp.array([list(range(6)) * 2])
    packed = logits(model, params, tokens, positions_BL=positions, segment_ids_BL=segments)
    alone = logits(model, params, tokens[:, 6:])
    np.testing.assert_allclose(packed[:, 6:], alone, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
    model, params = init(BASE.replace(dtype="bfloat16"))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
    out = logits(model, params, jnp.zeros((1, 12), jnp.int32))
    assert out.dtype == jnp.float32 and np.isfinite(out).all()
