"""The optimizer's settings (`OptimizerConfig`); `engine/optimizer.py` builds the optax chain."""

from __future__ import annotations

import dataclasses

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
