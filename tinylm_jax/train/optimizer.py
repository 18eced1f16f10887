"""AdamW with global-norm clipping, a weight-decay mask and learning-rate schedules."""

from __future__ import annotations

import dataclasses

import jax
import optax

from tinylm_jax.errors import ConfigError

SCHEDULES = ("cosine", "wsd", "constant", "linear")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW; defaults follow PanGu-pi Pro / TinyLlama (betas 0.9/0.95, wd 0.1, clip 1.0).

    `warmup_steps` < 1 is a fraction of the run (0.03 = 3%). `schedule`: `cosine` decays to
    `min_lr_ratio * learning_rate`; `wsd` (warmup-stable-decay) holds the peak and decays
    linearly to the floor over the last `decay_fraction` of the run; `linear` decays linearly
    from the end of warmup; `constant` holds the peak after warmup.
    """

    learning_rate: float = 3e-4
    schedule: str = "cosine"
    warmup_steps: float = 0.03
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    decay_norms: bool = False
    decay_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"OptimizerConfig.schedule: {self.schedule!r} is not one of {SCHEDULES}"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                f"OptimizerConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(
                f"OptimizerConfig.learning_rate must be positive, got {self.learning_rate}"
            )


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


def make_optimizer(
    config: OptimizerConfig,
    num_steps: int,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Clip → AdamW with masked decay; also returns the schedule for logging."""
    schedule = make_schedule(config, num_steps)
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
