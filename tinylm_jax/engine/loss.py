"""Token cross entropy from the final hidden states and the head, dense or in chunks.

The float32 logits of a step are `tokens × vocab × 4` bytes, and their gradient as much again:
at batch 4 × 2048 a 100k vocabulary needs 3.1 GiB for each. In chunks, only one chunk's logits
exist at a time, as in the fused linear cross entropy of Liger Kernel (arXiv 2410.10989,
Sec. 3.2); unlike it, the gradient is not formed in the forward pass: the forward keeps each
chunk's per-token losses and the backward recomputes the chunk's logits (`jax.checkpoint`), so
callers keep per-token losses under any weighting. Chunks span every row of the batch and a run
of positions, so the batch keeps its mesh sharding in every chunk.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tinylm_jax.model.transformer import head_logits


def dense_cross_entropy(x_BLD: jax.Array, head_DV: jax.Array, targets_BL: jax.Array) -> jax.Array:
    """Per-token cross entropy [B, L] (nats) of `targets_BL` under the logits `x_BLD @ head_DV`."""
    return optax.softmax_cross_entropy_with_integer_labels(head_logits(x_BLD, head_DV), targets_BL)


def cross_entropy(
    x_BLD: jax.Array, head_DV: jax.Array, targets_BL: jax.Array, chunk_tokens: int = 0
) -> jax.Array:
    """Per-token cross entropy [B, L] (nats), in chunks of at most `chunk_tokens` tokens.

    A chunk is `chunk_tokens // B` positions (at least 1) of every row; the length is padded
    to whole chunks and the padding's losses dropped. 0, or a chunk covering the whole
    sequence, is the dense computation.
    """
    B, L, D = x_BLD.shape
    chunk_len = max(chunk_tokens // B, 1)
    if not chunk_tokens or chunk_len >= L:
        return dense_cross_entropy(x_BLD, head_DV, targets_BL)
    n_chunks = math.ceil(L / chunk_len)
    pad = n_chunks * chunk_len - L
    x_BLD = jnp.pad(x_BLD, ((0, 0), (0, pad), (0, 0)))
    targets_BL = jnp.pad(targets_BL, ((0, 0), (0, pad)))
    # Chunks lead, so the scan walks them; each chunk keeps the batch's sharding.
    x_CBlD = jnp.swapaxes(x_BLD.reshape(B, n_chunks, chunk_len, D), 0, 1)
    x_CBlD = nn.with_logical_constraint(x_CBlD, (None, "act_batch", "act_length", "act_embed"))
    targets_CBl = jnp.swapaxes(targets_BL.reshape(B, n_chunks, chunk_len), 0, 1)

    # Saving nothing from the body keeps only its inputs for the backward pass, which then
    # recomputes one chunk's logits at a time instead of storing all of them. The head enters
    # in its param dtype, so its gradient sums over chunks in that precision, not bf16.
    @jax.checkpoint
    def chunk(carry: None, xs: tuple[jax.Array, jax.Array]) -> tuple[None, jax.Array]:
        x_BlD, targets_Bl = xs
        return carry, dense_cross_entropy(x_BlD, head_DV, targets_Bl)

    _, losses_CBl = jax.lax.scan(chunk, None, (x_CBlD, targets_CBl))
    losses_BL = jnp.swapaxes(losses_CBl, 0, 1).reshape(B, n_chunks * chunk_len)
    return losses_BL[:, :L]
