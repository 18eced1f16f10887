"""How far the host may run ahead of the devices.

JAX dispatches asynchronously: a loop that never reads a result queues computations as fast as
the host can trace them. XLA:CPU caps the computations in flight per device (32) and, once the
cap is hit, blocks the launch *inside its client thread pool*. That pool has max(cores,
devices) threads, exactly one per device on a small host with forced virtual devices (8 on 2
cores), and a program with a collective (an all-gather of a replicated output) needs one pool
thread per device at the same time. A launch blocked on the cap holds a thread the collective
ahead of it needs, so that collective never completes and XLA aborts after 40 s ("Expected 8
threads to join the rendezvous, but only 7 of them arrived"). `DispatchWindow` keeps the host at
most `depth` units of work ahead, far below the cap, so no launch ever blocks there.
"""

from __future__ import annotations

import collections
from typing import Any

import jax

# Units of work (a train step, a scored batch) the host may queue before waiting for the oldest.
# Two hide dispatch and host work behind the devices; each unit is a few computations per device.
DEFAULT_DEPTH = 2


class DispatchWindow:
    """Waits for the oldest outputs once more than `depth` units of work are in flight.

    `push(outputs)` after dispatching one unit of work (any pytree of arrays it returned);
    blocking on an old unit's outputs never delays the newer ones already queued.
    """

    def __init__(self, depth: int = DEFAULT_DEPTH):
        if depth < 1:
            raise ValueError(f"a dispatch window holds at least 1 unit, got depth={depth}")
        self.depth = depth
        self._pending: collections.deque[Any] = collections.deque()

    def push(self, outputs: Any) -> None:
        self._pending.append(outputs)
        while len(self._pending) > self.depth:
            jax.block_until_ready(self._pending.popleft())

    def __len__(self) -> int:
        return len(self._pending)
