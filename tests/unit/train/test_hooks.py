"""The hook registry on its own: order and `every`, requests passed down the chain, checkpoint
parts saved and restored by name, and the switchable data iterator."""

import dataclasses

import numpy as np
import pytest

from tinylm_jax.train.hooks import Hooks, StepInfo, SwitchableIterator, on_step


def info(step: int) -> StepInfo:
    return StepInfo(step=step, state=None, metrics={})


def test_hooks_run_in_order_at_their_steps_and_see_earlier_requests():
    seen, hooks = [], Hooks()
    hooks.add(on_step(lambda s: seen.append(("every step", s))))
    hooks.add(lambda i: dataclasses.replace(i, save=True), every=3)
    hooks.add(lambda i: seen.append(("save asked", i.step, i.save)) or i)
    results = [hooks.run(info(s)) for s in range(1, 5)]
    assert [r.save for r in results] == [False, False, True, False]
    assert seen == [
        ("every step", 1),
        ("save asked", 1, False),
        ("every step", 2),
        ("save asked", 2, False),
        ("every step", 3),
        ("save asked", 3, True),
        ("every step", 4),
        ("save asked", 4, False),
    ]
    with pytest.raises(ValueError, match="every >= 1"):
        hooks.add(lambda i: i, every=0)


class Counter:
    """A checkpoint part: a count in the metadata, its history as arrays once it has one."""

    def __init__(self):
        self.count, self.history = 0, None

    def save(self):
        arrays = None if self.history is None else {"history": self.history}
        return {"count": self.count}, arrays

    def restore(self, metadata, arrays):
        self.count = 0 if metadata is None else metadata["count"]
        self.history = None if arrays is None else arrays["history"]


def test_checkpoint_parts_save_and_restore_by_name():
    hooks, counter = Hooks(), Counter()
    hooks.add_part("counter", counter)
    assert hooks.part_names == ("counter",)
    assert hooks.save() == ({"counter": {"count": 0}}, {})  # no arrays: no extra item
    counter.count, counter.history = 2, np.arange(3)
    metadata, extras = hooks.save()
    assert metadata == {"counter": {"count": 2}} and list(extras) == ["counter"]

    resumed = Counter()
    other = Hooks()
    other.add_part("counter", resumed)
    other.restore({"step": 5, **metadata}, extras)
    assert resumed.count == 2 and resumed.history.tolist() == [0, 1, 2]
    other.restore({}, {})  # a fresh start
    assert resumed.count == 0 and resumed.history is None
    with pytest.raises(ValueError, match="added twice"):
        other.add_part("counter", Counter())


class Source:
    """A tiny checkpointable iterator over `values`, like a Grain iterator."""

    def __init__(self, values):
        self.values, self.position = list(values), 0

    def __next__(self):
        self.position += 1
        return self.values[self.position - 1]

    def get_state(self) -> bytes:
        return str(self.position).encode()

    def set_state(self, state: bytes) -> None:
        self.position = int(state)


def test_switchable_iterator_keeps_a_restored_state_until_start_and_switch_drops_it():
    selection = {"values": [1, 2, 3, 4]}
    it = SwitchableIterator(lambda: Source(selection["values"]))
    it.set_state(b"2")  # restored before the schedule says which data it belongs to
    it.start_prefetch()  # what Grain's handler calls after a restore: nothing to do yet
    it.start()
    assert next(it) == 3 and it.get_state() == b"3"
    selection["values"] = [10, 20]
    it.switch()
    assert [next(it), next(it)] == [10, 20]
