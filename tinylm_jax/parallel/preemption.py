"""SIGTERM, the notice a scheduler (SLURM, Kubernetes, a TPU maintenance event) sends before it
evicts a job: one policy for every `tinylm` command, exit code 143 (128 + SIGTERM).

- Anywhere, under `stop_at_once` (the command line installs it around every command), SIGTERM
  raises `Terminated` in the main thread: the command unwinds at once, its `finally` blocks
  run, and it exits 143. Run files are written atomically (a temporary file, then a rename:
  `tinylm_jax.files`), so an interrupted command leaves no half-written file; a rerun redoes
  what it did not finish.
- Files that only make sense together (a child workdir's checkpoint and its config) are
  written under `deferred`: a SIGTERM arriving meanwhile takes effect right after them.
- A training loop holds a `PreemptionWatcher` instead: SIGTERM is noticed between steps, a
  checkpoint is saved, and the run stops (`tinylm_jax.train.faults.Preempted`, a `Terminated`);
  the rerun resumes from that step.

Python runs signal handlers in the main thread only: from other threads nothing is installed
and SIGTERM keeps its default action. In a multi-process run JAX's preemption service owns
SIGTERM once `jax.distributed` starts (see `PreemptionWatcher`). The module imports JAX only
inside `PreemptionWatcher`, so the command line, which imports it for every command, keeps
`tinylm --help` light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job SIGTERM ended


class Terminated(BaseException):
    """SIGTERM stopped a command; the message says what is intact and how to go on.

    Like KeyboardInterrupt it is no `Exception`: raised asynchronously, anywhere, it must not be
    swallowed by an `except Exception` it happens to land in (logging's, a library's)."""

    def __init__(
        self, message: str = "stopped on SIGTERM; nothing was left half-written: rerun to redo it"
    ):
        super().__init__(message)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def stop_at_once() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread while the block runs."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds SIGTERM back while the block writes files that belong together; a SIGTERM that
    arrived meanwhile is delivered (to the handler before) as the block ends."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler before decides what it means


class PreemptionWatcher:
    """Notices SIGTERM between training steps instead of stopping at once.

    `should_stop(step)` is called after every step by every process and is True at the same
    step on all of them: multi-process runs use JAX's preemption sync manager (its SIGTERM
    notifier and the coordination service agree on a step); a single process uses a Python
    signal handler, whose notice `noticed` also reads between the batches of a scoring pass.
    Neither costs a host-device sync. Use as a context manager.
    """

    def __init__(self) -> None:
        import jax

        self._received = False
        self._previous: Any = None
        self._synced = jax.process_count() > 1

    def __enter__(self) -> PreemptionWatcher:
        if not self._synced and _in_main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        logging.warning("SIGTERM received: stopping after the current step")
        self._received = True

    @property
    def noticed(self) -> bool:
        """Whether this process's own handler has seen SIGTERM (single-process runs)."""
        return self._received

    def should_stop(self, step: int) -> bool:
        if self._synced:
            from jax.experimental import multihost_utils

            try:
                return multihost_utils.reached_preemption_sync_point(step)
            except RuntimeError:  # the coordination service runs without preemption sync
                logging.warning("JAX's preemption service is off; SIGTERM is not handled")
                self._synced = False
        return self._received
