"""Carrying embedding/head rows through an id map: kept logits unchanged, padding rows."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import DataError
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.recipes.pangu import vocab_mapping

OLD = ModelConfig(
    vocab_size=512, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=96, max_seq_len=64
)


def _id_map(old_size: int, kept: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = np.sort(
        np.concatenate([np.arange(4), rng.choice(np.arange(4, old_size), kept - 4, replace=False)])
    )
    id_map = np.full(old_size, -1, np.int32)
    id_map[keep] = np.arange(kept)
    return id_map


@pytest.mark.parametrize(
    "changes,boxed",
    [({"tie_embeddings": True}, False), ({}, False), ({"scan_layers": True}, True)],
)
def test_remapped_model_logits_equal_kept_logits(changes, boxed):
    cfg = OLD.replace(**changes)
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = Transformer(cfg).init(jax.random.key(0), tokens)["params"]
    params = params if boxed else nn.unbox(params)
    id_map = _id_map(cfg.vocab_size, 300)
    new_size = vocab_mapping.padded_vocab_size(300)  # 384: 84 fresh rows
    assert new_size == 384
    new_params = vocab_mapping.remap_vocab_params(params, id_map, new_size)
    new_cfg = cfg.replace(vocab_size=new_size)
    shapes = jax.tree_util.tree_map(jnp.shape, nn.unbox(new_params))
    assert shapes["token_embed"] == (new_size, cfg.d_model)
    assert ("lm_head" in shapes) == (not cfg.tie_embeddings)
    if not cfg.tie_embeddings:
        assert shapes["lm_head"] == (cfg.d_model, new_size)
    # Every other leaf is untouched.
    for name in params:
        if name not in ("token_embed", "lm_head"):
            assert new_params[name] is params[name]

    kept_old = np.flatnonzero(id_map >= 0)
    old_tokens = jnp.asarray(np.random.default_rng(1).choice(kept_old, (2, 16)))
    old_logits = Transformer(cfg).apply({"params": params}, old_tokens)[0]
    new_logits = Transformer(new_cfg).apply(
        {"params": new_params}, jnp.asarray(id_map)[old_tokens]
    )[0]
    np.testing.assert_allclose(new_logits[..., :300], old_logits[..., kept_old], atol=1e-5)
    # Fresh (padding) ids start at the mean logit of the kept vocabulary.
    mean = old_logits[..., kept_old].mean(-1, keepdims=True)
    np.testing.assert_allclose(
        new_logits[..., 300:], np.broadcast_to(mean, new_logits[..., 300:].shape), atol=1e-5
    )


def test_id_map_io_and_errors(tmp_path):
    id_map = _id_map(50, 20)
    vocab_mapping.save_id_map(tmp_path, id_map)
    np.testing.assert_array_equal(vocab_mapping.load_id_map(tmp_path), id_map)
    np.testing.assert_array_equal(vocab_mapping.load_id_map(tmp_path / "id_map.json"), id_map)
    with pytest.raises(DataError, match="does not exist"):
        vocab_mapping.load_id_map(tmp_path / "missing")
    bad = id_map.copy()
    bad[bad == 5] = 6  # Two old ids onto one new id.
    with pytest.raises(DataError, match="distinct new id"):
        vocab_mapping.save_id_map(tmp_path, bad)
    table = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    with pytest.raises(DataError, match="smaller than the new tokenizer"):
        vocab_mapping.remap_rows(table, id_map, vocab_size=10)
    with pytest.raises(DataError, match="bigger tokenizer"):
        vocab_mapping.remap_rows(table[:40], id_map)
    # A padded old model (more rows than the old tokenizer): extra rows are dropped.
    padded = np.concatenate([table, np.full((14, 3), 99.0, np.float32)])
    out = np.asarray(vocab_mapping.remap_rows(padded, id_map, vocab_size=24))
    np.testing.assert_array_equal(out[:20], table[np.flatnonzero(id_map >= 0)])
    np.testing.assert_allclose(out[20:], np.broadcast_to(out[:20].mean(0), (4, 3)))
