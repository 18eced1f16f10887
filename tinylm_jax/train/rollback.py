"""`TrainConfig.on_nonfinite = 'rollback'`: a loss spike that turns the loss or gradients
non-finite restores the last good checkpoint and skips the batches that follow it.

PaLM (arXiv 2204.02311, section 5.1) restarts ~100 steps before a spike and skips the
200–500 batches seen around it; here the restart point is the newest good checkpoint and the
skip is `TrainConfig.rollback_skip_batches` batches of the data order right after it. A second
rollback to the same checkpoint skips twice as many, so a spike the first skip did not avoid is
not replayed forever; `TrainConfig.max_rollbacks` bounds the count. `Rollbacks` is the
checkpoint part `rollbacks` (metadata only): the history of rollbacks so far. The skipped
batches are consumed from the data iterator before training goes on, so the next checkpoint's
data position already lies past them and a resumed run agrees with an uninterrupted one.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax

from tinylm_jax.config.train import TrainConfig
from tinylm_jax.train.metrics import NonFiniteError


@dataclasses.dataclass(frozen=True)
class Rollback:
    """One rollback: non-finite at `bad_step`, restored `restored_step`, skipped batches."""

    bad_step: int
    detected_step: int
    restored_step: int
    skipped_batches: int

    def record(self) -> dict[str, int]:
        """The metrics.jsonl record (logged at `restored_step`)."""
        return {
            "rollback_bad_step": self.bad_step,
            "rollback_detected_step": self.detected_step,
            "rollback_skipped_batches": self.skipped_batches,
        }

    def line(self, directory: str) -> str:
        return (
            f"non-finite loss or gradients at step {self.bad_step} (detected at step "
            f"{self.detected_step}): rolled back to step {self.restored_step} of {directory}, "
            f"skipping the next {self.skipped_batches} batches"
        )


class Rollbacks:
    """The rollback policy of a run and its checkpoint part `rollbacks`."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.history: list[dict] = []  # what the restored checkpoint and this run recorded
        self._to_step: collections.Counter[int] = collections.Counter()  # this process
        self._at_start: int | None = None  # rollbacks the checkpoint resumed from recorded

    def save(self) -> tuple[dict, None]:
        return {"history": list(self.history)}, None

    def restore(self, metadata: dict | None, arrays: dict | None) -> None:
        del arrays
        self.history = list((metadata or {}).get("history", []))
        if self._at_start is None:
            self._at_start = len(self.history)

    @property
    def count(self) -> int:
        """Rollbacks of this run so far, including those before the step it resumed from."""
        return (self._at_start or 0) + sum(self._to_step.values())

    def allows(self, error: NonFiniteError) -> bool:
        """Whether `error` is rolled back rather than raised."""
        if self.config.on_nonfinite != "rollback":
            return False
        return self.count < self.config.max_rollbacks

    def record(self, error: NonFiniteError, restored_step: int) -> Rollback:
        """Notes a rollback to `restored_step` (call after restoring: `restore` has reset the
        history to that checkpoint's) and returns it with the batches to skip."""
        self._to_step[restored_step] += 1
        skip = self.config.rollback_skip_batches * self._to_step[restored_step]
        event = Rollback(error.bad_step, error.step, restored_step, skip)
        self.history.append(dataclasses.asdict(event))
        return event

    def exhausted_message(self, error: NonFiniteError) -> str:
        return (
            f"{error} (TrainConfig.max_rollbacks={self.config.max_rollbacks} rollbacks were "
            f"already made: {self.history}; raise it or fix the instability.)"
        )


@dataclasses.dataclass(frozen=True)
class Restarter:
    """What a rollback touches in the loop: `restore()` is the loop's restore-or-init
    (state, metadata), `batches` the device prefetcher over `source`, `saver` the save hook."""

    restore: Callable[[], tuple[Any, dict]]
    manager: Any
    source: Iterator
    batches: Any
    saver: Any
    writer: Any
    tags: Callable[[], dict]

    def restart(self) -> tuple[Any, int]:
        """(state, step) of the last good checkpoint (or of a fresh start), the hooks' parts
        and the data position restored with it."""
        self.batches.stop()
        self.manager.wait_until_finished()
        state, metadata = self.restore()
        self.saver.reset(metadata)
        return state, int(jax.device_get(state.step))

    def skip(self, batches: int) -> None:
        """Consumes the next `batches` of the data order, then prefetches from there."""
        for _ in range(batches):
            next(self.source)
        self.batches.start()

    def log(self, event: Rollback) -> None:
        line = event.line(str(self.manager.directory))
        self.writer.write(event.restored_step, {**event.record(), **self.tags()}, line)


def run_with_rollbacks(
    policy: Rollbacks,
    run_steps: Callable[[Any, int], Any],
    restarter: Restarter,
    state: Any,
    start_step: int,
) -> Any:
    """`run_steps(state, start_step)`, rolled back on a non-finite loss while `policy` allows
    (`restarter` restores, skips the batches and logs the rollback)."""
    while True:
        try:
            return run_steps(state, start_step)
        except NonFiniteError as error:
            if not policy.allows(error):
                if policy.config.on_nonfinite == "rollback":
                    raise NonFiniteError(
                        policy.exhausted_message(error), error.bad_step, error.step
                    ) from None
                raise
            state, start_step = restarter.restart()
            event = policy.record(error, start_step)
            restarter.skip(event.skipped_batches)
            restarter.log(event)
