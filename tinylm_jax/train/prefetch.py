"""Batches prepared and put on the devices by a background thread, ahead of the train step.

The loop dispatches step n and immediately asks for batch n + 1; with `depth` batches already
on the devices, reading records, packing and the host-to-device copy overlap the step instead
of running between steps. The checkpointed data position stays exact: the thread records the
source iterator's state right after producing each batch, and `get_state` returns the state
after the last batch the loop took, not after the ones waiting in the queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Protocol

_POLL_S = 0.1  # how often a blocked producer checks whether it was stopped


class CheckpointableIterator(Protocol):
    """Batches whose position a checkpoint holds: Grain's `DataLoaderIterator`, or
    `SwitchableIterator` over one."""

    def __next__(self) -> dict: ...

    def get_state(self) -> bytes: ...

    def set_state(self, state: bytes) -> None: ...


class _Failure:
    """An exception raised by the producer, re-raised in the loop's thread."""

    def __init__(self, error: BaseException):
        self.error = error


class DevicePrefetcher:
    """Iterates `to_device(next(source))`, `depth` batches ahead, with a checkpointable state.

    `source` must have `get_state()` (a Grain iterator or `SwitchableIterator`); it is only
    touched by the producer thread while one runs, so `stop()` before using it directly
    (switching the data, restoring) and `start()` again after.
    """

    def __init__(
        self,
        source: CheckpointableIterator,
        to_device: Callable[[dict], dict],
        depth: int,
        describe: Callable[[dict], dict] | None = None,
    ):
        """`describe(host batch)`: host-side facts of each batch, read from `batch_info`
        for the batch the loop took last."""
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self._source = source
        self._to_device = to_device
        self._describe = describe
        self._depth = depth
        self.batch_info: dict = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self._state: bytes | None = None

    def start(self) -> None:
        """Starts producing from the source's current position."""
        self.stop()
        self._state = self._source.get_state()
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self._depth)
        self._thread = threading.Thread(
            target=self._produce, args=(self._stop, self._queue), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops the producer and drops the batches it made ahead (the source has moved past
        them; restore or restart it before `start`)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None

    def _produce(self, stop: threading.Event, out: queue.Queue) -> None:
        while not stop.is_set():
            try:
                batch = next(self._source)
                info = self._describe(batch) if self._describe else {}
                item: tuple | _Failure = (self._to_device(batch), info, self._source.get_state())
            except BaseException as error:  # noqa: BLE001 - re-raised in the loop's thread
                item = _Failure(error)
            while not stop.is_set():
                try:
                    out.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, _Failure):
                return

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> dict:
        if self._thread is None:
            raise RuntimeError("DevicePrefetcher.start() was not called")
        item = self._queue.get()
        if isinstance(item, _Failure):
            self.stop()
            raise item.error
        batch, self.batch_info, self._state = item
        return batch

    def get_state(self) -> bytes:
        """The source's state after the last batch returned (what a checkpoint must hold)."""
        if self._state is None:
            raise RuntimeError("DevicePrefetcher.start() was not called")
        return self._state
