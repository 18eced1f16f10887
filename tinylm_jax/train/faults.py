"""How `tinylm train` stops on a fault it survives: the exit codes a launcher reads, and the
hooks that stop the loop on SIGTERM (a preemption notice) after saving.

Exit codes (`tinylm train`): 0 done; 2 a user error (bad config or data, see
`tinylm_jax.errors`); 143 (128 + SIGTERM) preempted, a checkpoint was saved: rerun to resume.
"""

from __future__ import annotations

import dataclasses

import jax
from etils import epath

from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.parallel.distributed import PreemptionWatcher
from tinylm_jax.train.hooks import Hook, StepInfo

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: `tinylm train` saved a checkpoint and stopped early


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint at `step`."""

    def __init__(self, step: int, directory):
        super().__init__(f"preempted: saved step {step} in {directory}; rerun to resume")
        self.step = step


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
