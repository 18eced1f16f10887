"""Combined logits of a model and a delta model (Cross-model Control, arXiv 2410.17599,
Sec. 3): the delta's logits shift the model's, per position, as `CMCConfig.normalization`
says; with a token map the delta's logits are first gathered into the model's vocabulary.

Pure functions of arrays, shared by `tinylm cmc train` (template + delta) and by sampling,
eval and scoring with `--delta` (user model + delta)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from tinylm_jax.config.cmc import NORMALIZATIONS
from tinylm_jax.data.cross_vocab import CrossVocab, align_row, stack_rows
from tinylm_jax.engine.run import HostBatch, Run
from tinylm_jax.parallel import rules as rules_lib

Batch = dict[str, jax.Array]


def combined_logits(
    base_BLV: jax.Array,
    delta_BLW: jax.Array,
    normalization: str,
    alpha: float | jax.Array,
    map_V: jax.Array | None = None,
    shifted_BL: jax.Array | None = None,
) -> jax.Array:
    """'base': log_softmax(base) + alpha * delta; 'add': base + alpha * delta; 'both':
    log_softmax(base) + alpha * log_softmax(delta). Float32.

    `map_V` (model token -> delta token, -1: no match) gathers the delta's W logits into the
    model's V; without it W must equal V. An unmatched token gets a zero shift (its logit stays
    the model's), as in the public code's PM-MinED decoding; with 'both' the delta is
    normalized over its own vocabulary before the gather. `shifted_BL` (bool, the leading
    shape of the logits) zeroes the whole shift where it is False."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; one of {NORMALIZATIONS}")
    base_BLV = base_BLV.astype(jnp.float32)
    delta_BLW = delta_BLW.astype(jnp.float32)
    if normalization in ("base", "both"):
        base_BLV = jax.nn.log_softmax(base_BLV, axis=-1)
    if normalization == "both":
        delta_BLW = jax.nn.log_softmax(delta_BLW, axis=-1)
    shift_BLV = delta_BLW if map_V is None else gather_delta(delta_BLW, map_V)
    if shifted_BL is not None:
        shift_BLV = jnp.where(shifted_BL[..., None], shift_BLV, 0.0)
    return base_BLV + alpha * shift_BLV


def gather_delta(delta_BLW: jax.Array, map_V: jax.Array) -> jax.Array:
    """The delta's logits [..., W] as a shift [..., V] through `map_V` (-1: zero shift)."""
    gathered = jnp.take(delta_BLW, jnp.maximum(map_V, 0), axis=-1)
    return jnp.where(map_V >= 0, gathered, 0.0)


def combined_losses(
    model: nn.Module,
    delta: nn.Module,
    params: tuple[dict, dict],
    batch: Batch,
    normalization: str,
    alpha: float,
    map_V: jax.Array | None = None,
) -> jax.Array:
    """Per-token cross entropy [B, L] (nats) of the targets under the combined logits of
    `model` and `delta`; `params` is (model's, delta's).

    Without `map_V` the delta reads the model's inputs (same vocabulary). With it the delta
    reads its own tokenization, `delta_inputs`/`delta_positions`/`delta_segment_ids` [B, M],
    and `delta_index` [B, L] picks the delta position whose logits shift each model position
    (-1: zero shift), as `data.cross_vocab.align_row` makes them."""
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    base_BLV, _ = model.apply({"params": params[0]}, *inputs)
    if map_V is None:
        delta_BLV, _ = delta.apply({"params": params[1]}, *inputs)
        logits_BLV = combined_logits(base_BLV, delta_BLV, normalization, alpha)
    else:
        delta_inputs = (batch["delta_inputs"], batch["delta_positions"], batch["delta_segment_ids"])
        delta_BMW, _ = delta.apply({"params": params[1]}, *delta_inputs)
        index_BL = batch["delta_index"]
        delta_BLW = jnp.take_along_axis(delta_BMW, jnp.maximum(index_BL, 0)[..., None], axis=1)
        logits_BLV = combined_logits(
            base_BLV, delta_BLW, normalization, alpha, map_V, shifted_BL=index_BL >= 0
        )
    return optax.softmax_cross_entropy_with_integer_labels(logits_BLV, batch["targets"])


def aligned_batches(cross: CrossVocab) -> Callable[[HostBatch], HostBatch]:
    """A host-batch transform adding the delta's tokenization of every row (`align_row`),
    right-padded to the smallest multiple of the row length L that holds every process's
    longest row (so all processes build arrays of one global shape)."""

    def prepare(batch: HostBatch) -> HostBatch:
        inputs_BL, segments_BL = np.asarray(batch["inputs"]), np.asarray(batch["segment_ids"])
        rows = [align_row(cross, i, s) for i, s in zip(inputs_BL, segments_BL, strict=True)]
        longest = max([len(row.tokens) for row in rows] + [1])
        if jax.process_count() > 1:
            longest = int(np.max(multihost_utils.process_allgather(np.int32(longest))))
        L = inputs_BL.shape[1]
        width = -(-longest // L) * L
        return {**batch, **stack_rows(rows, width, cross.delta.pad_id)}

    return prepare


def with_delta(
    run: Run,
    delta: nn.Module,
    normalization: str,
    alpha: float,
    cross: CrossVocab | None = None,
) -> Run:
    """`run` whose eval and score steps use the combined logits of its model and `delta`: they
    take params as a (model's, delta's) pair, so held-out eval, scoring and multiple choice run
    unchanged with a delta. With `cross` (a delta of another tokenizer) the run's batches also
    carry the delta's tokenization (`Run.prepare_batch`) and the shift goes through the map."""
    map_V = None if cross is None else jnp.asarray(cross.map_for(run.config.model.vocab_size))
    losses = functools.partial(
        combined_losses, run.model, delta, normalization=normalization, alpha=alpha, map_V=map_V
    )

    def eval_fn(params, batch: Batch, byte_lengths_V: jax.Array) -> dict[str, jax.Array]:
        losses_BL, weights_BL = losses(params, batch), batch["weights"]
        return {
            "loss_sum": jnp.sum(losses_BL * weights_BL),
            "tokens": jnp.sum(weights_BL),
            "bytes": jnp.sum(byte_lengths_V[batch["targets"]] * weights_BL),
        }

    def score_fn(params, batch: Batch) -> jax.Array:
        return -jnp.sum(losses(params, batch) * batch["weights"], axis=1)

    replicated = rules_lib.replicated(run.mesh)
    return dataclasses.replace(
        run,
        eval_step=jax.jit(eval_fn, out_shardings=replicated),
        score_step=jax.jit(score_fn, out_shardings=replicated),
        prepare_batch=None if cross is None else aligned_batches(cross),
    )
