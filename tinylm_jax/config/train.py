"""Training and checkpointing settings (light: no TFDS, Grain or Orbax imports)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from tinylm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """`batch_size` is global, in sequences; `eval_every` 0 evaluates only at the end,
    `eval_steps` 0 never.

    `data_sharding`: 'global' — every process reads the whole global batch and feeds its
    devices' rows, so batches (and results) do not depend on the process count; 'process' —
    each process reads only its own shard of the records (less reading on many hosts, but
    the batches differ with the process count).

    `data_seed` seeds the data order (None: `seed`, which seeds the parameter init);
    `eval_batch_size` is the global batch of held-out eval and task scoring (None:
    `batch_size // microbatches`, the largest batch a train step runs at once).
    `prefetch_batches` batches are read and put on the devices ahead of the step by a thread.

    `on_nonfinite`: what a non-finite loss or gradient does — 'stop' (raise, nothing saved) or
    'rollback' (restore the last good checkpoint, skip the next `rollback_skip_batches`
    batches of the data order, go on; at most `max_rollbacks` times per run, recorded in the
    checkpoint), as PaLM (arXiv 2204.02311, section 5.1) does on loss spikes.

    `train_tokens`, a token budget, is the alternative to `num_steps`: the run takes
    ceil(train_tokens / (batch_size * seq_len)) steps. Set one: with a budget, `num_steps`
    must be None (which gin binds when no config sets it) or equal that count.

    `compilation_cache`: JAX's persistent compilation cache directory (None: under the data
    dir, or `$JAX_COMPILATION_CACHE_DIR` when set; 'off' disables it;
    `$TINYLM_COMPILATION_CACHE` overrides this field; `tinylm_jax.engine.compilation_cache`).

    `trackers`: where metrics go besides `metrics.jsonl` and stdout ('tensorboard', 'wandb';
    the `wandb` extra); `tracker_group` groups runs in W&B (sweeps and ladders set it).
    """

    num_steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    seed: int = 0
    microbatches: int = 1
    log_every: int = 10
    eval_every: int = 0
    eval_steps: int = 8
    data_sharding: str = "global"
    data_seed: int | None = None
    eval_batch_size: int | None = None
    prefetch_batches: int = 2
    # Fault handling (tinylm_jax.train.rollback).
    on_nonfinite: str = "stop"
    rollback_skip_batches: int = 200
    max_rollbacks: int = 3
    train_tokens: int | None = None
    compilation_cache: str | None = None
    trackers: tuple[str, ...] = ("tensorboard",)
    tracker_group: str | None = None

    def __post_init__(self) -> None:
        self._resolve_num_steps()
        if self.data_sharding not in ("global", "process"):
            raise ConfigError(
                f"TrainConfig.data_sharding must be 'global' or 'process'; got "
                f"{self.data_sharding!r}"
            )
        if self.microbatches <= 0 or self.batch_size % self.microbatches:
            raise ConfigError(
                f"TrainConfig.batch_size={self.batch_size} is not divisible by "
                f"TrainConfig.microbatches={self.microbatches}"
            )
        if min(self.num_steps, self.batch_size, self.seq_len, self.log_every) <= 0:
            raise ConfigError(f"TrainConfig sizes must be positive: {self}")
        if self.prefetch_batches < 1:
            raise ConfigError(
                f"TrainConfig.prefetch_batches must be at least 1; got {self.prefetch_batches}"
            )
        if self.on_nonfinite not in ("stop", "rollback"):
            raise ConfigError(
                f"TrainConfig.on_nonfinite must be 'stop' or 'rollback'; got {self.on_nonfinite!r}"
            )
        if self.rollback_skip_batches < 0 or self.max_rollbacks < 0:
            raise ConfigError(
                "TrainConfig.rollback_skip_batches and .max_rollbacks must be >= 0; got "
                f"{self.rollback_skip_batches} and {self.max_rollbacks}"
            )
        if self.eval_batch_size is not None and self.eval_batch_size <= 0:
            raise ConfigError(
                f"TrainConfig.eval_batch_size must be positive; got {self.eval_batch_size}"
            )
        _check_trackers(self.trackers)

    def _resolve_num_steps(self) -> None:
        if self.train_tokens is None:
            if self.num_steps is None:
                raise ConfigError(
                    "TrainConfig.num_steps is None but no TrainConfig.train_tokens is set; "
                    "set one of them"
                )
            return
        if self.train_tokens <= 0 or min(self.batch_size, self.seq_len) <= 0:
            raise ConfigError(
                f"TrainConfig.train_tokens and sizes must be positive; got {self.train_tokens}"
            )
        steps = math.ceil(self.train_tokens / self.tokens_per_step)
        if self.num_steps is None:
            # Frozen: the budget fixes num_steps once, here, so every reader sees an int.
            object.__setattr__(self, "num_steps", steps)
        elif self.num_steps != steps:
            raise ConfigError(
                f"TrainConfig.num_steps = {self.num_steps} and TrainConfig.train_tokens = "
                f"{self.train_tokens} ({steps} steps of {self.tokens_per_step} tokens) both set "
                "the run's length; set one, e.g. --gin_param='TrainConfig.num_steps = None'"
            )

    @property
    def resolved_data_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def resolved_eval_batch_size(self) -> int:
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return self.batch_size // self.microbatches

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


TRACKERS = ("tensorboard", "wandb")


def _check_trackers(trackers) -> None:
    if isinstance(trackers, str) or not set(trackers) <= set(TRACKERS):
        raise ConfigError(
            f"TrainConfig.trackers must be a tuple drawn from {TRACKERS}, e.g. "
            f"('tensorboard', 'wandb'); got {trackers!r}"
        )
    if len(set(trackers)) != len(trackers):
        raise ConfigError(f"TrainConfig.trackers names a tracker twice: {trackers!r}")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Saving, retention and initialization from another run.

    Attributes:
      every_steps: save every this many steps (and always at the end).
      keep: keep the newest `keep` checkpoints ...
      keep_period: ... plus every step divisible by `keep_period` (None: none extra).
      async_save: write in a background thread while training goes on.
      init_from: another run's workdir; a run with no checkpoint of its own starts from its
        params (optimizer state and step start fresh).
      init_step: the step of `init_from` to read (None: its latest).
      init_mapping: {target prefix: source prefix} over '/'-joined param paths, e.g.
        `{'layers_0': 'layers_0', 'layers_1': 'layers_5', 'token_embed': 'token_embed'}`;
        only mapped params are read, the rest keep their fresh init. None: every param,
        same names. '' as a key or value means the whole tree.
    """

    every_steps: int = 500
    keep: int = 3
    keep_period: int | None = None
    async_save: bool = True
    init_from: str | None = None
    init_step: int | None = None
    init_mapping: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.every_steps <= 0 or self.keep <= 0:
            raise ConfigError(
                f"CheckpointConfig.every_steps and .keep must be positive; got {self}"
            )
