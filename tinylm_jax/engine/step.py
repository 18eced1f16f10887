"""Pure train and eval step functions (jit them with explicit shardings in the loop)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tinylm_jax.engine.loss import cross_entropy
from tinylm_jax.engine.state import TrainState
from tinylm_jax.model.byte_level import byte_losses

Batch = dict[str, jax.Array]


def token_losses(model: nn.Module, params: dict, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """Per-token cross entropy [B, L] (nats) and its weights [B, L].

    A token head's loss is computed from the hidden states and the head kernel, dense or in
    chunks of `ModelConfig.loss_chunk_tokens` (`loss.cross_entropy`). With
    `output_head='bytes'` a token's loss is the nats of its bytes (`byte_losses`), so summed
    losses stay code lengths of the text and bits per byte compares across heads
    (`byte_variant='stlm'` leaves out the end-of-token mark, as the released loss does).
    """
    cfg = model.config
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    if cfg.output_head == "bytes":
        logits, _ = model.apply({"params": params}, *inputs)
        target_bytes_BLT = jnp.asarray(model.token_bytes.table_VT)[batch["targets"]]
        return byte_losses(logits, target_bytes_BLT, cfg.byte_variant), batch["weights"]
    (x_BLD, head_DV), _ = model.apply({"params": params}, *inputs, return_hidden=True)
    losses_BL = cross_entropy(x_BLD, head_DV, batch["targets"], cfg.loss_chunk_tokens)
    return losses_BL, batch["weights"]


def objective_losses(
    model: nn.Module, params: dict, batch: Batch
) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """`token_losses` plus the auxiliary per-token losses [B, L] the training loss adds, by
    metric name: STLM's `reconstruction_loss` (`ModelConfig.reconstructs_bytes`), the byte
    head's nats of each input token's own bytes decoded from its pooled embedding, summed into
    the loss as the released trainer sums `ByteModelShell`'s auxiliary loss. Empty otherwise.
    """
    cfg = model.config
    if not cfg.reconstructs_bytes:
        return *token_losses(model, params, batch), {}
    inputs = (batch["inputs"], batch["positions"], batch["segment_ids"])
    (logits, reconstruction), _ = model.apply({"params": params}, *inputs, reconstruct=True)
    table_VT = jnp.asarray(model.token_bytes.table_VT)
    losses_BL = byte_losses(logits, table_VT[batch["targets"]], cfg.byte_variant)
    recon_BL = byte_losses(reconstruction, table_VT[batch["inputs"]], cfg.byte_variant)
    return losses_BL, batch["weights"], {"reconstruction_loss": recon_BL}


def _split_microbatches(batch: Batch, microbatches: int) -> Batch:
    """[B, ...] -> [M, B/M, ...] taking strided rows, so each microbatch spans every shard."""

    def split(x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0] // microbatches, microbatches) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        return nn.with_logical_constraint(x, (None, "act_batch") + (None,) * (x.ndim - 2))

    return jax.tree_util.tree_map(split, batch)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    microbatches: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on the token-weighted mean loss (auxiliary losses summed in, each
    also reported under its own name), accumulating over microbatches."""

    def loss_sum(params: dict, micro: Batch) -> tuple[jax.Array, tuple[jax.Array, dict]]:
        losses, weights, auxiliary = objective_losses(model, params, micro)
        aux_sums = {name: jnp.sum(aux * weights) for name, aux in auxiliary.items()}
        total = jnp.sum(losses * weights)
        if aux_sums:
            total = total + sum(aux_sums.values())
        return total, (jnp.sum(weights), aux_sums)

    grad_fn = jax.value_and_grad(loss_sum, has_aux=True)
    if microbatches == 1:
        (total_loss, (total_weight, aux_totals)), grads = grad_fn(state.params, batch)
    else:

        def accumulate(carry, micro):
            (l_, (w_, a_)), g_ = grad_fn(state.params, micro)
            return jax.tree_util.tree_map(jnp.add, carry, (l_, w_, a_, g_)), None

        zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
        aux_zeros = jax.eval_shape(loss_sum, state.params, batch)[1][1]
        aux_zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), aux_zeros)
        (total_loss, total_weight, aux_totals, grads), _ = jax.lax.scan(
            accumulate,
            (jnp.zeros(()), jnp.zeros(()), aux_zeros, zeros),
            _split_microbatches(batch, microbatches),
        )

    denominator = jnp.maximum(total_weight, 1.0)
    grads = jax.tree_util.tree_map(lambda g: g / denominator, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": total_loss / denominator,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": schedule(state.step),
        "tokens": total_weight,
        **{name: aux / denominator for name, aux in aux_totals.items()},
    }
    new_state = dataclasses.replace(state, step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


def eval_step(
    params: dict,
    batch: Batch,
    byte_lengths_V: jax.Array,
    *,
    model: nn.Module,
) -> dict[str, jax.Array]:
    """Sums for held-out metrics: loss (nats), tokens and the UTF-8 bytes those tokens decode to."""
    losses, weights = token_losses(model, params, batch)
    return {
        "loss_sum": jnp.sum(losses * weights),
        "tokens": jnp.sum(weights),
        "bytes": jnp.sum(byte_lengths_V[batch["targets"]] * weights),
    }


def score_step(params: dict, batch: Batch, *, model: nn.Module) -> jax.Array:
    """Summed log-likelihood [B] of each row's targets where `weights` is 1."""
    losses_BL, weights_BL = token_losses(model, params, batch)
    return -jnp.sum(losses_BL * weights_BL, axis=1)
