"""Attention implementations against the dense reference: values and gradients."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.model.attention import (
    blockwise_attention,
    causal_attention,
    document_mask,
    resolve_implementation,
)
from tinylm_jax.model.transformer import Transformer


def _reference(q, k, v, segment_ids):
    mask = None if segment_ids is None else document_mask(segment_ids)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation="xla")


def _inputs(B, L, N, K, H, documents, seed=0):
    keys = jax.random.split(jax.random.key(seed), 5)
    q = jax.random.normal(keys[0], (B, L, N, H))
    k = jax.random.normal(keys[1], (B, L, K, H))
    v = jax.random.normal(keys[2], (B, L, K, H))
    cotangent = jax.random.normal(keys[3], (B, L, N, H))
    # Sorted random ids: contiguous documents of random lengths, as packing produces.
    segments = jnp.sort(jax.random.randint(keys[4], (B, L), 0, documents), axis=1)
    return q, k, v, cotangent, segments


@pytest.mark.parametrize(
    "B, L, N, K, H, block, documents",
    [
        (2, 37, 4, 2, 8, 16, 3),  # odd length, a block that does not divide it, GQA, documents
        (1, 24, 4, 1, 8, 32, 1),  # MQA, one document, one block longer than the sequence
    ],
)
def test_blockwise_matches_reference_values_and_gradients(B, L, N, K, H, block, documents):
    q, k, v, cotangent, segments = _inputs(B, L, N, K, H, documents)
    expected, ref_vjp = jax.vjp(lambda *x: _reference(*x, segments), q, k, v)
    actual, new_vjp = jax.vjp(lambda *x: blockwise_attention(*x, segments, block), q, k, v)
    np.testing.assert_allclose(actual, expected, atol=2e-6, rtol=1e-5)
    for got, want in zip(new_vjp(cotangent), ref_vjp(cotangent), strict=True):
        np.testing.assert_allclose(got, want, atol=5e-6, rtol=1e-5)


def test_without_segment_ids_is_plain_causal_attention():
    q, k, v, cotangent, _ = _inputs(2, 40, 4, 2, 8, 1)
    for implementation in ("blockwise", "xla"):
        out = causal_attention(q, k, v, None, implementation, block_size=16)
        np.testing.assert_allclose(out, _reference(q, k, v, None), atol=2e-6, rtol=1e-5)


def test_bfloat16_inputs_stay_bfloat16_and_close_to_float32():
    q, k, v, cotangent, segments = _inputs(2, 32, 4, 2, 16, 2)
    half = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    out, vjp = jax.vjp(lambda *x: blockwise_attention(*x, segments, 16), *half)
    grads = vjp(cotangent.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    reference = _reference(*[x.astype(jnp.float32) for x in half], segments)
    np.testing.assert_allclose(out.astype(jnp.float32), reference, atol=3e-2, rtol=3e-2)


def test_blockwise_under_jit_and_grad_of_a_scalar_loss():
    q, k, v, _, segments = _inputs(2, 24, 4, 4, 8, 2)
    loss = lambda fn: jax.jit(jax.grad(lambda q: jnp.sum(fn(q, k, v, segments) ** 2)))(q)
    expected = loss(_reference)
    actual = loss(lambda *x: blockwise_attention(*x, 8))
    np.testing.assert_allclose(actual, expected, atol=5e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "name, platform, dtype, head_dim, expected",
    [
        ("auto", "cpu", jnp.float32, 64, "blockwise"),
        ("auto", "cpu", jnp.bfloat16, 64, "blockwise"),
        ("auto", "gpu", jnp.bfloat16, 64, "cudnn"),
        ("auto", "gpu", jnp.float16, 128, "cudnn"),
        ("auto", "gpu", jnp.float32, 64, "xla"),  # cuDNN's kernel takes half precision only
        ("auto", "gpu", jnp.bfloat16, 256, "xla"),  # head dim over cuDNN's 128
        ("auto", "tpu", jnp.bfloat16, 128, "xla"),
        ("xla", "cpu", jnp.float32, 64, "xla"),
        ("blockwise", "gpu", jnp.bfloat16, 64, "blockwise"),
    ],
)
def test_auto_resolves_by_platform_dtype_and_head_dim(name, platform, dtype, head_dim, expected):
    assert resolve_implementation(name, platform, dtype, head_dim) == expected


def test_transformer_logits_and_gradients_agree_across_implementations():
    base = ModelConfig(
        vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, attention_block_size=8
    )
    tokens = jax.random.randint(jax.random.key(0), (2, 21), 0, 64)
    segments = jnp.asarray([[1] * 10 + [2] * 11, [1] * 21])
    params = Transformer(base).init(jax.random.key(1), tokens)["params"]

    def logits_and_grad(implementation):
        model = Transformer(dataclasses.replace(base, attention_impl=implementation))

        def loss(params):
            logits, _ = model.apply({"params": params}, tokens, segment_ids_BL=segments)
            return jnp.mean(jax.nn.logsumexp(logits, axis=-1)), logits

        (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return logits, grads

    ref_logits, ref_grads = logits_and_grad("xla")
    logits, grads = logits_and_grad("blockwise")
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-4)
