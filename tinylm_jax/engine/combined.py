"""Combined logits of a model and a delta model (Cross-model Control, arXiv 2410.17599,
Sec. 3): the delta's logits shift the model's, per position, as `CMCConfig.normalization`
says; with a token map the delta's logits are first gathered into the model's vocabulary.

Pure functions of arrays, shared by `tinylm cmc train` (template + delta) and by sampling,
eval and scoring with `--delta` (user model + delta)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tinylm_jax.config.cmc import NORMALIZATIONS


def combined_logits(
    base_BLV: jax.Array,
    delta_BLW: jax.Array,
    normalization: str,
    alpha: float | jax.Array,
    map_V: jax.Array | None = None,
) -> jax.Array:
    """'base': log_softmax(base) + alpha * delta; 'add': base + alpha * delta; 'both':
    log_softmax(base) + alpha * log_softmax(delta). Float32.

    `map_V` (model token -> delta token, -1: no match) gathers the delta's W logits into the
    model's V; without it W must equal V. An unmatched token gets a zero shift (its logit stays
    the model's), as in the public code's PM-MinED decoding; with 'both' the delta is
    normalized over its own vocabulary before the gather."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; one of {NORMALIZATIONS}")
    base_BLV = base_BLV.astype(jnp.float32)
    delta_BLW = delta_BLW.astype(jnp.float32)
    if normalization in ("base", "both"):
        base_BLV = jax.nn.log_softmax(base_BLV, axis=-1)
    if normalization == "both":
        delta_BLW = jax.nn.log_softmax(delta_BLW, axis=-1)
    shift_BLV = delta_BLW if map_V is None else gather_delta(delta_BLW, map_V)
    return base_BLV + alpha * shift_BLV


def gather_delta(delta_BLW: jax.Array, map_V: jax.Array) -> jax.Array:
    """The delta's logits [..., W] as a shift [..., V] through `map_V` (-1: zero shift)."""
    gathered = jnp.take(delta_BLW, jnp.maximum(map_V, 0), axis=-1)
    return jnp.where(map_V >= 0, gathered, 0.0)
