"""Settings of multiple-round training (light: no TFDS, Grain or Orbax imports).

PanGu-π Pro (arXiv 2402.02791, section "Multiple-Round Training"): after a round, the
frozen model scores the training data and the next round trains on a sample drawn without
replacement with probabilities softmax(loss), so the data it forgot most is replayed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from tinylm_jax.errors import ConfigError

SELECTIONS = ("softmax_loss", "uniform", "tinyhelen")
UNITS = ("sequence", "batch")
DIFFICULTIES = ("self_loss", "reference_loss", "length")
ADVANCES = ("plateau", "steps")


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
      selection: 'softmax_loss' (PanGu: draw without replacement ∝ exp(l/τ)), 'uniform'
        (the control arm: as many units as `softmax_loss`, drawn uniformly) or 'tinyhelen'
        (TinyHelen's curriculum, arXiv 2501.00522: rounds are stages; stage k trains on the
        easiest min(1, start_fraction + fraction_step·(k − 1)) of the units; `num_rounds`,
        `sampling_rate`, `temperature` and `partitions` do not apply).
      score_batch_size: global batch of the scoring pass (None: the eval batch size).
      seed: seed of the sampling noise (None: `TrainConfig`'s data seed); saved in the
        checkpoint, so a resumed run draws the same ids.
      start_fraction, fraction_step: TinyHelen's first stage and growth per stage (5%, 5%).
      difficulty: what makes a unit easy under 'tinyhelen': 'self_loss' (the model's own loss,
        rescored at every stage; stage 1, before any training, is a seeded random draw),
        'reference_loss' (another model's loss: `reference` is the per-record scores file
        `tinylm score --workdir=REF --split=train --out=FILE` writes on this data) or
        'length' (mean length of the documents a unit holds, shorter first).
      advance: when a stage ends: 'plateau' (TinyHelen's early stopping: the held-out loss
        of `patience` periodic evals in a row failed to beat the best by more than
        `min_delta`; needs `TrainConfig.eval_every`) or 'steps' (every `round_steps` steps).
      restart_schedule: run the learning-rate schedule (warmup, decay) afresh in every round
        instead of once over the run. Whether PanGu-π Pro restarts it is not stated (its
        release has no multi-round code); off by default. Needs rounds of known length.
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
    start_fraction: float = 0.05
    fraction_step: float = 0.05
    difficulty: str = "self_loss"
    reference: str | None = None
    advance: str = "plateau"
    patience: int = 3
    min_delta: float = 0.0
    restart_schedule: bool = False

    @property
    def tinyhelen(self) -> bool:
        return self.selection == "tinyhelen"

    @property
    def scheduled(self) -> bool:
        """Whether the data changes during the run (False: one round on the whole split)."""
        return self.num_rounds > 1 or self.tinyhelen

    @property
    def num_stages(self) -> int:
        """TinyHelen's stages up to the whole split."""
        return 1 + math.ceil(round((1.0 - self.start_fraction) / self.fraction_step, 9))

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
        if self.selection == "easiest_first":
            raise ConfigError(
                "RoundsConfig.selection='easiest_first' was removed: it trained on all data "
                "first and on the easiest part later, the reverse of TinyHelen's curriculum; "
                "use selection='tinyhelen'"
            )
        if self.selection not in SELECTIONS:
            raise ConfigError(
                f"RoundsConfig.selection must be one of {SELECTIONS}; got {self.selection!r}"
            )
        self._check_tinyhelen()
        if self.score_batch_size is not None and self.score_batch_size <= 0:
            raise ConfigError(
                f"RoundsConfig.score_batch_size must be positive; got {self.score_batch_size}"
            )

    def _check_tinyhelen(self) -> None:
        def fail(what: str) -> None:
            raise ConfigError(f"RoundsConfig (selection='tinyhelen'): {what}")

        if not 0.0 < self.start_fraction <= 1.0 or not 0.0 < self.fraction_step <= 1.0:
            fail("start_fraction and fraction_step must lie in (0, 1]")
        if self.difficulty not in DIFFICULTIES:
            fail(f"difficulty must be one of {DIFFICULTIES}; got {self.difficulty!r}")
        if self.advance not in ADVANCES:
            fail(f"advance must be one of {ADVANCES}; got {self.advance!r}")
        if self.patience < 1 or self.min_delta < 0:
            fail(f"patience must be >= 1 and min_delta >= 0; got {self.patience}, {self.min_delta}")
        if self.restart_schedule and self.tinyhelen and self.advance == "plateau":
            fail("restart_schedule needs stages of known length: advance='steps'")
        if not self.tinyhelen:
            return
        if self.num_rounds != 1:
            fail("stages follow start_fraction/fraction_step; leave num_rounds at 1")
        if self.difficulty == "reference_loss" and not self.reference:
            fail("difficulty='reference_loss' needs `reference`, a scores file of `tinylm score`")
        if self.advance == "steps" and not isinstance(self.round_steps, int):
            fail("advance='steps' needs round_steps, one int (the steps of each stage)")

    def steps_per_round(self, num_steps: int) -> tuple[int, ...]:
        """The steps of each round, checked against `TrainConfig.num_steps` (TinyHelen: the
        stages `advance='steps'` starts within the run, the last one to its end; one
        open-ended stage under 'plateau')."""
        if self.tinyhelen:
            if self.advance == "plateau":
                return (num_steps,)
            assert isinstance(self.round_steps, int)
            ends = [self.round_steps * k for k in range(1, self.num_stages)]
            ends = [e for e in ends if e < num_steps] + [num_steps]
            return tuple(b - a for a, b in zip([0, *ends[:-1]], ends, strict=True))
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
