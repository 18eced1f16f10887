"""optax optimizers (AdamW, Lion, Adafactor, Muon) behind global-norm clipping, with a
weight-decay mask and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
import optax

from tinylm_jax.config.optimizer import OptimizerConfig
from tinylm_jax.errors import ConfigError

# Muon's matrices: the attention and MLP projections, by parameter name, as (reduction axes,
# output axes) counted from the end, so a leading scanned `layers` axis is a batch axis.
# Everything else (embeddings, head, norms, byte-level blocks) takes AdamW, as in Jordan et
# al.'s Muon and Liu et al. (arXiv 2502.16982, Sec. 2).
MUON_AXES = {
    "q_proj": (-3, (-2, -1)),
    "k_proj": (-3, (-2, -1)),
    "v_proj": (-3, (-2, -1)),
    "o_proj": ((-3, -2), -1),
    "gate_proj": (-2, -1),
    "up_proj": (-2, -1),
    "down_proj": (-2, -1),
}
# Liu et al. (arXiv 2502.16982, Sec. 2.2): Muon's update scaled to AdamW's typical RMS (0.2 x
# sqrt(max dim)), so both share one learning rate and weight decay.
MUON_CONSISTENT_RMS = 0.2


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


def _muon_label(path, _) -> str:
    return "muon" if _path_names(path)[-1] in MUON_AXES else "adam"


def _muon(config: OptimizerConfig, schedule: optax.Schedule, adamw) -> optax.GradientTransformation:
    """Muon on the projection matrices, `adamw` on the rest (optax.partition by name)."""
    import optax.contrib

    if not hasattr(optax.contrib, "muon"):
        raise ConfigError(
            f"OptimizerConfig.name='muon' needs optax.contrib.muon, which optax "
            f"{optax.__version__} does not ship; upgrade optax (pip install -U optax)"
        )

    def dimension_numbers(params):
        def dims(path, _):
            reduction, output = MUON_AXES[_path_names(path)[-1]]
            return optax.contrib.MuonDimensionNumbers(reduction, output)

        return jax.tree_util.tree_map_with_path(dims, params)

    muon = optax.contrib.muon(
        schedule,
        weight_decay=config.weight_decay,
        weight_decay_mask=lambda p: decay_mask(config, p),
        muon_weight_dimension_numbers=dimension_numbers,
        consistent_rms=MUON_CONSISTENT_RMS,
    )
    labels = lambda params: jax.tree_util.tree_map_with_path(_muon_label, params)  # noqa: E731
    return optax.partition({"muon": muon, "adam": adamw}, labels)


def _base(config: OptimizerConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    mask = lambda p: decay_mask(config, p)  # noqa: E731
    adamw = optax.adamw(
        schedule, b1=config.b1, b2=config.b2, eps=config.eps,
        weight_decay=config.weight_decay, mask=mask,
    )  # fmt: skip
    if config.name == "lion":
        return optax.lion(
            schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay, mask=mask
        )
    if config.name == "adafactor":
        # optax's Adafactor adds `weight_decay_rate * param` after the learning rate: scale it
        # by the schedule here, so weight_decay means what it means for AdamW (lr x wd per step;
        # an unscaled 0.1 would shrink the weights by 10% every step).
        return optax.adafactor(
            schedule,
            weight_decay_rate=lambda step: config.weight_decay * schedule(step),
            weight_decay_mask=mask,
        )
    if config.name == "muon":
        return _muon(config, schedule, adamw)
    return adamw


def restarted_schedule(config: OptimizerConfig, steps_per_round: Sequence[int]) -> optax.Schedule:
    """The schedule run afresh in every round (warmup and decay over that round's steps)."""
    schedules = [make_schedule(config, steps) for steps in steps_per_round]
    return optax.join_schedules(schedules, [int(b) for b in np.cumsum(steps_per_round)[:-1]])


def make_optimizer(
    config: OptimizerConfig,
    num_steps: int,
    steps_per_round: Sequence[int] | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Clip → `config.name`'s optimizer with masked decay; also returns the schedule. With
    `steps_per_round`, the schedule restarts at every round (`RoundsConfig.restart_schedule`)."""
    schedule = (
        make_schedule(config, num_steps)
        if steps_per_round is None
        else restarted_schedule(config, steps_per_round)
    )
    base = _base(config, schedule)
    if config.grad_clip:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip), base), schedule
    return base, schedule
