"""A hook registry for the training loop (levanter's `trainer.add_hook(fn, every=N)`).

The loop only runs steps; what happens between them (logging, periodic eval, the round switch
of multi-round training, preemption, checkpoint saves) is a hook. A hook takes the
`StepInfo` of the step just done and returns it, possibly with a request for the hooks after
it (`save`, `preempted`, `paused`), so features talk through values instead of through the
loop. Hooks run in the order they were added.

A feature with state a resumed run needs (a data schedule: which round, which records) adds
a `CheckpointPart` under a name: its JSON is saved under that name in the checkpoint's
metadata and its arrays as the checkpoint item of that name, so a new schedule needs no edit
to the loop or to `tinylm_jax.engine.checkpoint`. It changes the data through
`SwitchableIterator`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import jax
import numpy as np

from tinylm_jax.engine.state import TrainState
from tinylm_jax.train.prefetch import CheckpointableIterator


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """Step `step` is done (`state` is after it; `metrics` are still on the devices) and what
    the hooks run so far ask of the ones after them.

    Attributes:
      save: checkpoint this step (the save hook writes it even off its schedule).
      preempted: the job is being evicted: save this step, then stop.
      paused: a hook took time off the steps; the next throughput figure starts afresh.
      batch_info: host-side facts of the step's batch (see `Hooks.describe_batch`).
    """

    step: int
    state: TrainState
    metrics: Mapping[str, jax.Array]
    save: bool = False
    preempted: bool = False
    paused: bool = False
    batch_info: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


Hook = Callable[[StepInfo], StepInfo]


class CheckpointPart(Protocol):
    """A hook's own state in every checkpoint: JSON metadata plus optional host arrays."""

    def save(self) -> tuple[dict, dict[str, np.ndarray] | None]:
        """(metadata, arrays or None) to save now."""

    def restore(self, metadata: dict | None, arrays: dict[str, np.ndarray] | None) -> None:
        """Takes the state of a checkpoint (both None: a fresh start or a checkpoint written
        without this part)."""


@runtime_checkable
class Tagging(Protocol):
    """A part whose state every metrics record names (e.g. the round)."""

    def tags(self) -> dict: ...


@runtime_checkable
class BatchDescribing(Protocol):
    """A part that reads facts off each host batch (see `StepInfo.batch_info`)."""

    def describe_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Hooks:
    """The loop's hooks and the checkpoint parts of its features."""

    def __init__(self) -> None:
        self._hooks: list[tuple[Hook, int]] = []
        self._parts: dict[str, CheckpointPart] = {}

    def add(self, fn: Hook, every: int = 1) -> None:
        """Runs `fn` after every step whose count is a multiple of `every`."""
        if every < 1:
            raise ValueError(f"a hook runs every >= 1 steps, got every={every}")
        self._hooks.append((fn, every))

    def add_part(self, name: str, part: CheckpointPart) -> None:
        """Saves and restores `part` as the metadata key and checkpoint item `name`."""
        if name in self._parts:
            raise ValueError(f"checkpoint part {name!r} is added twice")
        self._parts[name] = part

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def run(self, info: StepInfo) -> StepInfo:
        """Runs the hooks due at `info.step` in order, each on its predecessor's result."""
        for fn, every in self._hooks:
            if info.step % every == 0:
                info = fn(info)
        return info

    def save(self) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]]:
        """(metadata by part name, arrays by part name, for the parts that have any)."""
        metadata, extras = {}, {}
        for name, part in self._parts.items():
            metadata[name], arrays = part.save()
            if arrays is not None:
                extras[name] = arrays
        return metadata, extras

    def tags(self) -> dict:
        """What every metrics record says of the parts' state (the parts that say any)."""
        merged: dict = {}
        for part in self._parts.values():
            if isinstance(part, Tagging):
                merged.update(part.tags())
        return merged

    def describe_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host-side facts of a batch from the parts that read any (the loop's prefetcher
        calls this ahead of the step; hooks find them in `StepInfo.batch_info`)."""
        merged: dict = {}
        for part in self._parts.values():
            if isinstance(part, BatchDescribing):
                merged.update(part.describe_batch(batch))
        return merged

    def restore(self, metadata: Mapping, extras: Mapping[str, dict[str, np.ndarray]]) -> None:
        """Hands each part its share of a checkpoint's metadata and extra items ({} and {}
        on a fresh start)."""
        for name, part in self._parts.items():
            part.restore(metadata.get(name), extras.get(name))


def on_step(fn: Callable[[int], None]) -> Hook:
    """A hook that calls `fn(step)` and requests nothing."""

    def hook(info: StepInfo) -> StepInfo:
        fn(info.step)
        return info

    return hook


class SwitchableIterator:
    """The batches of whatever `make()` builds, checkpointed like a Grain iterator.

    A data-schedule hook changes what `make` builds and calls `switch()`: the data then starts
    from the first batch of the new selection. A state restored before the schedule is known
    (`set_state`, from the checkpoint's `data` item) is kept until `start()` builds the
    iterator it belongs to, because Grain checks that a state matches its source and sampler.
    """

    def __init__(self, make: Callable[[], CheckpointableIterator]):
        self._make = make
        self._inner: CheckpointableIterator | None = None
        self._pending: bytes | None = None

    def start(self) -> None:
        """Builds the iterator, at the restored position if there is one."""
        self._inner = self._make()
        if self._pending is not None:
            self._inner.set_state(self._pending)
            self._pending = None

    def _started(self) -> CheckpointableIterator:
        if self._inner is None:
            raise RuntimeError("SwitchableIterator.start() was not called")
        return self._inner

    def switch(self) -> None:
        """Restarts on what `make()` builds now, from its first batch."""
        self._pending = None
        self.start()

    def get_state(self) -> bytes:
        return self._started().get_state()

    def set_state(self, state: bytes) -> None:
        self._pending = state

    def start_prefetch(self) -> None:
        """Grain's checkpoint handler calls this after a restore; the inner iterator is made
        (and prefetches) in `start`."""

    def __iter__(self) -> SwitchableIterator:
        return self

    def __next__(self) -> dict:
        return next(self._started())
