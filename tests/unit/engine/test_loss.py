"""Chunked cross entropy ≡ dense: per-token losses and gradients (float32 and bf16 compute,
chunks that do not divide the length, zero weights), the train step of a tied model with
microbatches on a sharded mesh; and the chunks really keep the full logits out of memory."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.loss import cross_entropy
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.errors import ConfigError
from tinylm_jax.train.bench import synthetic_batch

BASE = ModelConfig(
    vocab_size=97, d_model=32, n_layers=1, n_heads=4, ffn_dim=64, max_seq_len=64, init_std=0.2
)
B, L = 2, 12


def batch(seed: int = 0) -> dict[str, jax.Array]:
    """Two documents per row (segment ids 1, 2) and some zero weights."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, BASE.vocab_size, (B, L + 1), dtype=np.int32)
    segment_ids = np.where(np.arange(L) < 7, 1, 2).astype(np.int32)[None].repeat(B, 0)
    positions = np.where(segment_ids == 1, np.arange(L), np.arange(L) - 7).astype(np.int32)
    weights = (rng.random((B, L)) > 0.3).astype(np.float32)
    return {
        "inputs": jnp.asarray(tokens[:, :-1]),
        "targets": jnp.asarray(tokens[:, 1:]),
        "segment_ids": jnp.asarray(segment_ids),
        "positions": jnp.asarray(positions),
        "weights": jnp.asarray(weights),
    }


def weighted_sum_and_grads(loss_fn, args: tuple, weights_BL: jax.Array):
    """Per-token losses and the gradients of their weighted sum w.r.t. every arg."""

    def weighted_sum(*a):
        losses_BL = loss_fn(*a)
        return jnp.sum(losses_BL * weights_BL), losses_BL

    grad_fn = jax.value_and_grad(weighted_sum, argnums=tuple(range(len(args))), has_aux=True)
    (_, losses_BL), grads = jax.jit(grad_fn)(*args)
    return losses_BL, grads


def assert_same(chunked, dense, compute_dtype: str) -> None:
    """Losses and gradients agree to float32 precision; with bf16 compute, gradients to bf16's
    (each chunk's head gradient is rounded before the chunks are summed, the dense one once)."""
    (chunked_losses, chunked_grads), (dense_losses, dense_grads) = chunked, dense
    assert chunked_losses.shape == dense_losses.shape and chunked_losses.dtype == jnp.float32
    np.testing.assert_allclose(chunked_losses, dense_losses, rtol=1e-6, atol=1e-6)
    rtol = 1e-5 if compute_dtype == "float32" else 2**-6
    flat_dense = jax.tree_util.tree_leaves_with_path(dense_grads)
    for (path, d), c in zip(flat_dense, jax.tree_util.tree_leaves(chunked_grads), strict=True):
        d, c = np.asarray(d, np.float32), np.asarray(c, np.float32)
        atol = rtol * float(np.max(np.abs(d)))
        np.testing.assert_allclose(c, d, rtol=rtol, atol=atol, err_msg=str(path))


@pytest.mark.parametrize(
    "dtype, chunk_tokens",
    [
        ("float32", 8),  # 4 positions a chunk: 3 whole chunks
        ("float32", 10),  # 5 positions a chunk: the length is padded to 15
        ("float32", 1),  # fewer tokens than rows: one position a chunk
        ("bfloat16", 6),
    ],
)
def test_cross_entropy_in_chunks_equals_dense(dtype, chunk_tokens):
    keys = jax.random.split(jax.random.key(0), 3)
    x_BLD = jax.random.normal(keys[0], (B, L, 16)).astype(dtype)
    head_DV = jax.random.normal(keys[1], (16, 97))
    targets_BL = jax.random.randint(keys[2], (B, L), 0, 97)
    weights_BL = batch()["weights"]
    chunked = lambda x, h: cross_entropy(x, h, targets_BL, chunk_tokens)
    dense = lambda x, h: cross_entropy(x, h, targets_BL)
    args = (x_BLD, head_DV)
    assert_same(
        weighted_sum_and_grads(chunked, args, weights_BL),
        weighted_sum_and_grads(dense, args, weights_BL),
        dtype,
    )


def test_chunked_step_keeps_the_full_logits_out_of_memory():
    V, D, N = 4096, 64, 512
    x_BLD = jax.ShapeDtypeStruct((4, N // 4, D), jnp.float32)
    head_DV = jax.ShapeDtypeStruct((D, V), jnp.float32)
    targets_BL = jax.ShapeDtypeStruct((4, N // 4), jnp.int32)

    def temp_bytes(chunk_tokens: int) -> int:
        loss = lambda x, h, t: jnp.sum(cross_entropy(x, h, t, chunk_tokens))
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return grad.lower(x_BLD, head_DV, targets_BL).compile().memory_analysis().temp_size_in_bytes

    logits_bytes = N * V * 4
    assert temp_bytes(0) >= logits_bytes
    assert temp_bytes(64) < logits_bytes / 2


def test_chunked_train_step_of_a_tied_bf16_model_with_microbatches_on_a_mesh_equals_dense():
    """The real step: the tied head's gradient reaches the embedding both ways, microbatches
    chunk their own rows, batch and params shard over fsdp and the vocabulary over tensor."""
    mesh = MeshConfig(data=1, fsdp=2, tensor=2, num_devices=4)
    config = RunConfig(
        model=BASE.replace(vocab_size=96, tie_embeddings=True, dtype="bfloat16"),
        train=TrainConfig(batch_size=8, seq_len=16, microbatches=2),
        mesh=mesh,
    )
    dense_run = build_run(config)
    # 4 rows x 4 positions a chunk, 4 chunks a microbatch.
    chunked_run = build_run(config.replace(model=config.model.replace(loss_chunk_tokens=16)))
    with run_context(dense_run):
        state = init_state(dense_run.init_fn, 0, dense_run.shardings)
        data = synthetic_batch(dense_run)
        # The steps donate their state, so each gets its own copy.
        _, chunked = chunked_run.train_step(jax.tree_util.tree_map(jnp.copy, state), data)
        _, dense = dense_run.train_step(state, data)
    np.testing.assert_allclose(chunked["loss"], dense["loss"], rtol=1e-6)
    np.testing.assert_allclose(chunked["grad_norm"], dense["grad_norm"], rtol=2**-8)
    assert chunked["tokens"] == dense["tokens"] == 8 * 16


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"loss_chunk_tokens": -1}, "must be 0 (dense) or positive"),
        ({"output_head": "bytes", "loss_chunk_tokens": 64}, "output_head='bytes'"),
    ],
)
def test_loss_chunk_tokens_that_cannot_apply_are_explained(changes, message):
    with pytest.raises(ConfigError, match="loss_chunk_tokens.*" + re.escape(message)):
        BASE.replace(**changes)
