"""DevicePrefetcher: same batches, exact checkpoint state while running ahead, errors."""

from __future__ import annotations

import json
import time

import pytest

from tinylm_jax.train.prefetch import DevicePrefetcher


class CountingSource:
    """Batches {'x': i}; its state is the next index, as JSON bytes like Grain's."""

    def __init__(self, stop_at: int | None = None, fail_at: int | None = None):
        self.position = 0
        self.stop_at, self.fail_at = stop_at, fail_at

    def __next__(self) -> dict:
        if self.position == self.fail_at:
            raise OSError(f"record {self.position} is unreadable")
        if self.position == self.stop_at:
            raise StopIteration
        self.position += 1
        return {"x": self.position - 1}

    def get_state(self) -> bytes:
        return json.dumps({"next": self.position}).encode()

    def set_state(self, state: bytes) -> None:
        self.position = json.loads(state)["next"]


def _wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the producer did not run ahead"
        time.sleep(0.01)


def test_yields_the_sources_batches_through_to_device():
    batches = DevicePrefetcher(CountingSource(stop_at=5), lambda b: {"x": 10 * b["x"]}, depth=2)
    batches.start()
    assert [b["x"] for b in batches] == [0, 10, 20, 30, 40]


def test_state_is_after_the_last_batch_taken_not_after_the_ones_queued():
    source = CountingSource()
    batches = DevicePrefetcher(source, lambda b: b, depth=3)
    batches.start()
    assert json.loads(batches.get_state()) == {"next": 0}
    next(batches), next(batches)
    _wait_until(lambda: source.position >= 5)  # two taken, three (or four) read ahead
    assert json.loads(batches.get_state()) == {"next": 2}
    batches.stop()

    # Restoring that state and restarting yields exactly the batches not yet taken.
    source.set_state(batches.get_state())
    batches.start()
    assert [next(batches)["x"] for _ in range(3)] == [2, 3, 4]
    batches.stop()


def test_an_error_in_the_producer_is_raised_in_the_loop_after_the_good_batches():
    batches = DevicePrefetcher(CountingSource(fail_at=2), lambda b: b, depth=2)
    batches.start()
    assert [next(batches)["x"] for _ in range(2)] == [0, 1]
    with pytest.raises(OSError, match="record 2 is unreadable"):
        next(batches)


def test_next_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="start"):
        next(DevicePrefetcher(CountingSource(), lambda b: b, depth=1))
