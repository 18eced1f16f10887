"""How `tinylm train` stops on a fault it survives: the exit codes a launcher reads, and the
hooks that stop the loop on SIGTERM (a preemption notice) after saving.

Exit codes (`tinylm train`): 0 done; 2 a user error (bad config or data, see
`tinylm_jax.errors`); 143 (128 + SIGTERM, `tinylm_jax.parallel.preemption`) preempted, a
checkpoint was saved (or, during a scoring pass, the last one is intact): rerun to resume;
75 (EX_TEMPFAIL) another process of a multi-process run died: relaunch every process to resume
from the last good checkpoint (`launch/` scripts relaunch on it, a bounded number of times).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import jax
from etils import epath

from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.parallel.preemption import PreemptionWatcher, Terminated
from tinylm_jax.train.hooks import Hook, StepInfo


class Preempted(Terminated):
    """Training stopped on SIGTERM after saving a checkpoint at `step`."""

    def __init__(self, step: int, directory):
        super().__init__(f"preempted: saved step {step} in {directory}; rerun to resume")
        self.step = step


def scoring_stop(
    watcher: PreemptionWatcher, directory: epath.Path, inject: Callable[[int], None] | None
) -> Callable[[int], None]:
    """The `after_batch` of a training run's scoring pass: runs `inject` (a test's fault), then
    stops the pass on a SIGTERM noticed meanwhile (a single process; the processes of a
    multi-process run agree on a step only between steps). Nothing is saved: a checkpoint of
    the round's last step without its round switch would resume into the wrong round, so the
    rerun resumes from the last checkpoint and redoes the steps and the scoring, which are
    deterministic."""

    def after_batch(index: int) -> None:
        if inject is not None:
            inject(index)
        if watcher.noticed:
            raise Terminated(
                f"SIGTERM during a scoring pass (batch {index}): stopped without saving; "
                f"{_last_checkpoint(directory)}; rerun to resume from it"
            )

    return after_batch


def _last_checkpoint(directory: epath.Path) -> str:
    saved = ckpt.complete_steps(directory)
    return (
        f"last good checkpoint: step {saved[0]} in {directory}"
        if saved
        else (f"no checkpoint in {directory} yet")
    )


def preemption_hooks(watcher: PreemptionWatcher, manager, workdir: epath.Path) -> tuple[Hook, Hook]:
    """(ask, stop): `ask` (before the save hook) asks for a checkpoint when SIGTERM arrived;
    `stop` (after it) waits for that save and raises `Preempted`."""

    def ask(info: StepInfo) -> StepInfo:
        if not watcher.should_stop(info.step):  # every process calls it after every step
            return info
        return dataclasses.replace(info, save=True, preempted=True)

    def stop(info: StepInfo) -> StepInfo:
        if not info.preempted:
            return info
        manager.wait_until_finished()
        if jax.process_index() == 0:
            print(f"SIGTERM: saved step {info.step}; stopping", flush=True)
        raise Preempted(info.step, ckpt.checkpoint_dir(workdir))

    return ask, stop


PEER_LOST_EXIT_CODE = 75  # EX_TEMPFAIL: another process of the run died; relaunch them all
# What the distributed runtime (coordination service, gloo, barriers) says when a peer is gone;
# other runtime errors (out of memory, a bad program) are not a lost peer.
_PEER_MARKERS = (
    "unavailable",
    "deadline_exceeded",
    "heartbeat",
    "connection",
    "gloo",
    "barrier",
    "coordination",
    "task died",
    "peer",
)
_TASK = re.compile(r"task[:/_ ]?(\d+)", re.IGNORECASE)


class PeerLost(Exception):
    """This process stopped at `step` because another process of the run stopped answering;
    the message says which (when the runtime's error names it), the last good checkpoint and
    how to relaunch."""

    def __init__(self, step: int, directory: epath.Path, cause: BaseException):
        found = _TASK.search(str(cause))
        lost = f"process {found.group(1)}" if found else "another process"
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
        super().__init__(
            f"lost a peer: {lost} of the {jax.process_count()} stopped answering, so process "
            f"{jax.process_index()} stopped at step {step} ({type(cause).__name__}: "
            f"{first_line}); {_last_checkpoint(directory)}. Relaunch the same command on every "
            "process to resume from it (launch/ scripts do this themselves, exit code "
            f"{PEER_LOST_EXIT_CODE})."
        )
        self.step = step


def is_peer_loss(error: BaseException) -> bool:
    """Whether `error` (raised in a multi-process run) is the runtime failing on a dead peer:
    a collective, barrier or key-value call of the distributed runtime that failed."""
    if jax.process_count() == 1 or not isinstance(
        error, (jax.errors.JaxRuntimeError, TimeoutError)
    ):
        return False
    text = str(error).lower()
    return any(marker in text for marker in _PEER_MARKERS)


class Progress:
    """The last step this process finished (a hook), for the message of a lost peer."""

    def __init__(self, step: int = 0):
        self.step = step

    def __call__(self, info: StepInfo) -> StepInfo:
        self.step = info.step
        return info
