"""Settings of multiple-round training (light: no TFDS, Grain or Orbax imports).

PanGu-π Pro (arXiv 2402.02791, section "Multiple-Round Training"): after a round, the
frozen model scores the training data and the next round trains on a sample drawn without
replacement with probabilities softmax(loss), so the data it forgot most is replayed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tinylm_jax.errors import ConfigError

SELECTIONS = ("softmax_loss", "easiest_first", "uniform")
UNITS = ("sequence", "batch")


@dataclasses.dataclass(frozen=True)
class RoundsConfig:
    """How many rounds, how long, and how each round after the first picks its data.

    Attributes:
      num_rounds: rounds of training; 1 trains on the whole split once (no scoring).
      round_steps: steps per round: one int for every round, a list (one per round), or None
        to split `TrainConfig.num_steps` evenly. They must add up to `num_steps`.
      sampling_rate: r, the fraction of units each later round trains on, in (0, 1].
      temperature: τ of `softmax_loss`: p_i ∝ exp(l_i / τ). Per-unit losses of a few nats make
        τ = 1 nearly uniform; a smaller τ sharpens the preference for hard units.
      partitions: K; the id range is cut into K contiguous parts and each part gives its own
        share r·n_k, so the selection keeps the corpus's mix (ids follow document order).
      unit: 'sequence' scores and selects packed records by their stable id; 'batch' groups
        `TrainConfig.batch_size` consecutive records into one unit (the paper's batches).
      selection: 'softmax_loss' (PanGu: draw without replacement ∝ exp(l/τ)),
        'easiest_first' (a TinyHelen-style curriculum, arXiv 2501.00522: the lowest-loss
        fraction min(1, r·(k − 1)) of units in round k, growing each round) or 'uniform'
        (the control arm: as many units as `softmax_loss`, drawn uniformly).
      score_batch_size: global batch of the scoring pass (None: the eval batch size).
      seed: seed of the sampling noise (None: `TrainConfig`'s data seed); saved in the
        checkpoint, so a resumed run draws the same ids.
    """

    num_rounds: int = 1
    round_steps: int | Sequence[int] | None = None
    sampling_rate: float = 0.5
    temperature: float = 1.0
    partitions: int = 1
    unit: str = "sequence"
    selection: str = "softmax_loss"
    score_batch_size: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.round_steps, Sequence):
            object.__setattr__(self, "round_steps", tuple(int(s) for s in self.round_steps))
        if self.num_rounds < 1:
            raise ConfigError(f"RoundsConfig.num_rounds must be >= 1; got {self.num_rounds}")
        if not 0.0 < self.sampling_rate <= 1.0:
            raise ConfigError(
                f"RoundsConfig.sampling_rate must lie in (0, 1]; got {self.sampling_rate}"
            )
        if self.temperature <= 0:
            raise ConfigError(f"RoundsConfig.temperature must be > 0; got {self.temperature}")
        if self.partitions < 1:
            raise ConfigError(f"RoundsConfig.partitions must be >= 1; got {self.partitions}")
        if self.unit not in UNITS:
            raise ConfigError(f"RoundsConfig.unit must be one of {UNITS}; got {self.unit!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"RoundsConfig.selection must be one of {SELECTIONS}; got {self.selection!r}"
            )
        if self.score_batch_size is not None and self.score_batch_size <= 0:
            raise ConfigError(
                f"RoundsConfig.score_batch_size must be positive; got {self.score_batch_size}"
            )

    def steps_per_round(self, num_steps: int) -> tuple[int, ...]:
        """The steps of each round, checked against `TrainConfig.num_steps`."""
        if self.round_steps is None:
            if num_steps % self.num_rounds:
                raise ConfigError(
                    f"TrainConfig.num_steps={num_steps} does not split evenly into "
                    f"RoundsConfig.num_rounds={self.num_rounds}; set RoundsConfig.round_steps"
                )
            steps = (num_steps // self.num_rounds,) * self.num_rounds
        elif isinstance(self.round_steps, int):
            steps = (self.round_steps,) * self.num_rounds
        else:
            steps = tuple(self.round_steps)
        if len(steps) != self.num_rounds or min(steps) <= 0 or sum(steps) != num_steps:
            raise ConfigError(
                f"RoundsConfig.round_steps={self.round_steps} gives rounds of {list(steps)} "
                f"steps; they must be {self.num_rounds} positive numbers adding up to "
                f"TrainConfig.num_steps={num_steps}"
            )
        return steps
