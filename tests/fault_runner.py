"""`python -m tests.fault_runner FAULT tinylm-args...`: runs `tinylm` with a fault injected.

FAULT is `KILL@5` (SIGKILL right after step 5 is dispatched), `KILL@4:save` (right after step
4's checkpoint save started, while an async save is still being written), `KILL@2:score`
(right after batch 2 of a multi-round scoring pass is dispatched), `TERM@3` (SIGTERM after
step 3) or `NAN@5` (the params turn NaN after step 5, once per process: a loss spike).
The fault is a `TrainHooks` callback, so production code has no test switch. Under a launcher
(`TINYLM='python -m tests.fault_runner KILL@5' launch/local_multiprocess.sh ...`),
`TINYLM_FAULT_PROCESS=1` fires it in process 1 only and `TINYLM_FAULT_MARKER=FILE` only once
(the file is made when it fires), so the relaunched processes run clean.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp

from tinylm_jax.cli import main as cli
from tinylm_jax.train.loop import TrainHooks


def _armed() -> bool:
    """Whether this process fires its fault (see TINYLM_FAULT_PROCESS, TINYLM_FAULT_MARKER)."""
    process = os.environ.get("TINYLM_FAULT_PROCESS")
    if process is not None and f"--process_id={process}" not in sys.argv:
        return False
    marker = os.environ.get("TINYLM_FAULT_MARKER")
    if marker is None:
        return True
    try:
        with open(marker, "x"):
            return True
    except FileExistsError:
        return False


def nan_after(step: int):
    """A `TrainHooks.edit_state` that makes the params NaN after `step`, the first time only
    (a rolled-back run passes that step again)."""
    fired = []

    def edit(done: int, state):
        if done != step or fired:
            return state
        fired.append(done)
        return state.replace(params=jax.tree_util.tree_map(lambda x: x * jnp.nan, state.params))

    return edit


def hooks_for(spec: str) -> TrainHooks:
    signame, _, rest = spec.partition("@")
    step_text, _, phase = rest.partition(":")
    if signame == "NAN":
        return TrainHooks(edit_state=nan_after(int(step_text)))
    step, sig = int(step_text), getattr(signal, "SIG" + signame)

    def fire(done: int) -> None:
        if done == step and _armed():
            # Tests tell a fault that fired from a run that never got there (a harness timeout).
            print(f"fault_runner: {spec} fires", file=sys.stderr, flush=True)
            os.kill(os.getpid(), sig)

    if phase == "score":
        return TrainHooks(after_score_batch=fire)
    return TrainHooks(after_save=fire) if phase == "save" else TrainHooks(after_step=fire)


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[2:], train_hooks=hooks_for(sys.argv[1])))
