"""AdamW with global-norm clipping, a weight-decay mask and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import optax

from tinylm_jax.config.optimizer import OptimizerConfig


def resolve_warmup(config: OptimizerConfig, num_steps: int) -> int:
    if config.warmup_steps < 1:
        return int(round(config.warmup_steps * num_steps))
    return int(config.warmup_steps)


def make_schedule(config: OptimizerConfig, num_steps: int) -> optax.Schedule:
    peak, floor = config.learning_rate, config.learning_rate * config.min_lr_ratio
    warmup = min(resolve_warmup(config, num_steps), num_steps)
    rest = max(num_steps - warmup, 1)
    if config.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, rest, alpha=config.min_lr_ratio)
    elif config.schedule == "linear":
        after = optax.linear_schedule(peak, floor, rest)
    elif config.schedule == "constant":
        after = optax.constant_schedule(peak)
    else:
        decay = max(int(round(config.decay_fraction * num_steps)), 1)
        stable = max(rest - decay, 0)
        after = optax.join_schedules(
            [optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay)], [stable]
        )
    if warmup == 0:
        return after
    # Warmup starts at peak/warmup, not zero, so the first step already moves the weights.
    ramp = (
        optax.linear_schedule(peak / warmup, peak, warmup - 1)
        if warmup > 1
        else (optax.constant_schedule(peak))
    )
    return optax.join_schedules([ramp, after], [warmup])


def _path_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def decay_mask(config: OptimizerConfig, params) -> object:
    """True where weight decay applies; works on plain or logically-boxed param trees."""

    def keep(path, _) -> bool:
        names = _path_names(path)
        if not config.decay_norms and any(n.endswith("norm") for n in names):
            return False
        if not config.decay_embeddings and any(n in ("token_embed", "lm_head") for n in names):
            return False
        return True

    return jax.tree_util.tree_map_with_path(keep, params)


def restarted_schedule(config: OptimizerConfig, steps_per_round: Sequence[int]) -> optax.Schedule:
    """The schedule run afresh in every round (warmup and decay over that round's steps)."""
    schedules = [make_schedule(config, steps) for steps in steps_per_round]
    return optax.join_schedules(schedules, [int(b) for b in np.cumsum(steps_per_round)[:-1]])


def make_optimizer(
    config: OptimizerConfig,
    num_steps: int,
    steps_per_round: Sequence[int] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Clip → AdamW with masked decay; also returns the schedule for logging. With
    `steps_per_round`, the schedule restarts at every round (`RoundsConfig.restart_schedule`)."""
    schedule = (
        make_schedule(config, num_steps)
        if steps_per_round is None
        else restarted_schedule(config, steps_per_round)
    )
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=lambda p: decay_mask(config, p),
    )
    if config.grad_clip:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw), schedule
    return adamw, schedule
