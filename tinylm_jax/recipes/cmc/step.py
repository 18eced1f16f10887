"""The CMC loss and train step: the frozen template and the delta in one jitted step, the
loss on their combined logits, gradients only into the delta (arXiv 2410.17599, Sec. 3)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tinylm_jax.config.cmc import CMCConfig
from tinylm_jax.engine.combined import combined_logits
from tinylm_jax.engine.state import TrainState

Batch = dict[str, jax.Array]


def cmc_loss(
    template_BLV: jax.Array, delta_BLV: jax.Array, batch: Batch, config: CMCConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, metrics) of the combined logits on `batch`'s targets.

    Retain tokens (weights where `forget` is 0) give their mean cross entropy, forget tokens
    the negative of theirs: instruction pairs and retain texts are learned, forget texts
    unlearned. 'grad_ascent' drops the retain term (the public code's `grad_ascent` and
    `grad_diff`, each a separate mean as there)."""
    logits_BLV = combined_logits(template_BLV, delta_BLV, config.normalization, config.alpha)
    ce_BL = optax.softmax_cross_entropy_with_integer_labels(logits_BLV, batch["targets"])
    forget_BL = batch["weights"] * batch["forget"]
    retain_BL = batch["weights"] * (1.0 - batch["forget"])
    forget_tokens, retain_tokens = jnp.sum(forget_BL), jnp.sum(retain_BL)
    forget_loss = jnp.sum(ce_BL * forget_BL) / jnp.maximum(forget_tokens, 1.0)
    retain_loss = jnp.sum(ce_BL * retain_BL) / jnp.maximum(retain_tokens, 1.0)
    if config.forget_loss == "grad_ascent":
        retain_weight = jnp.where(forget_tokens > 0, 0.0, 1.0)  # pure instruction data still learns
    else:
        retain_weight = jnp.ones(())
    loss = retain_weight * retain_loss - forget_loss
    metrics = {
        "retain_loss": retain_loss,
        "forget_loss": forget_loss,
        "tokens": forget_tokens + retain_tokens,
    }
    return loss, metrics


def logits_of(model: nn.Module, params: dict, batch: Batch) -> jax.Array:
    """[B, L, V] logits of a token-head model on `batch`'s inputs."""
    logits, _ = model.apply(
        {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"]
    )
    return logits


def cmc_train_step(
    state: TrainState,
    template_params: dict,
    batch: Batch,
    *,
    template: nn.Module,
    delta: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    config: CMCConfig,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step of the delta; the template's params are only read."""
    template_BLV = jax.lax.stop_gradient(logits_of(template, template_params, batch))

    def loss_fn(params: dict):
        return cmc_loss(template_BLV, logits_of(delta, params, batch), batch, config)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        **metrics,
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": schedule(state.step),
    }
    new_state = dataclasses.replace(state, step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics
