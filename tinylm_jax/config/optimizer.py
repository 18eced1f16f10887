"""The optimizer's settings (`OptimizerConfig`); `engine/optimizer.py` builds the optax chain."""

from __future__ import annotations

import dataclasses

from tinylm_jax.errors import ConfigError

SCHEDULES = ("cosine", "wsd", "constant", "linear")
OPTIMIZERS = ("adamw", "lion", "adafactor", "muon")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer; defaults follow PanGu-pi Pro / TinyLlama: AdamW, betas 0.9/0.95, wd 0.1,
    clip 1.0.

    `name` picks optax's optimizer; every one keeps the schedule, global-norm clipping and the
    decay mask: `adamw` (Loshchilov & Hutter, arXiv 1711.05101); `lion` (Chen et al., arXiv
    2302.06675; `b1`/`b2` are its interpolation and momentum rates, and it wants a learning
    rate 3-10x below AdamW's); `adafactor` (Shazeer & Stern, arXiv 1804.04235; optax's
    defaults: factored second moments, relative step size, update clipping 1.0; `b1`, `b2`,
    `eps` unused); `muon` (Jordan et al. 2024; Liu et al., arXiv 2502.16982) on the attention
    and MLP matrices, with AdamW (`b1`, `b2`, `eps`) on embeddings, head and norms, where
    optax ships `optax.contrib.muon`.

    `warmup_steps` < 1 is a fraction of the run (0.03 = 3%). `schedule`: `cosine` decays to
    `min_lr_ratio * learning_rate`; `wsd` (warmup-stable-decay) holds the peak and decays
    linearly to the floor over the last `decay_fraction` of the run; `linear` decays linearly
    from the end of warmup; `constant` holds the peak after warmup.
    """

    learning_rate: float = 3e-4
    name: str = "adamw"
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
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"OptimizerConfig.name: {self.name!r} is not one of {OPTIMIZERS}")
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
