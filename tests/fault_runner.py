"""`python -m tests.fault_runner FAULT tinylm-args...`: runs `tinylm` with a fault injected.

FAULT is `KILL@5` (SIGKILL right after step 5 is dispatched), `KILL@4:save` (right after step
4's checkpoint save started, while an async save is still being written), `KILL@2:score`
(right after batch 2 of a multi-round scoring pass is dispatched) or `TERM@3` (SIGTERM after
step 3). The fault is a `TrainHooks` callback, so production code has no test switch.
"""

import os
import signal
import sys

from tinylm_jax.cli import main as cli
from tinylm_jax.train.loop import TrainHooks


def hooks_for(spec: str) -> TrainHooks:
    signame, _, rest = spec.partition("@")
    step_text, _, phase = rest.partition(":")
    step, sig = int(step_text), getattr(signal, "SIG" + signame)

    def fire(done: int) -> None:
        if done == step:
            os.kill(os.getpid(), sig)

    if phase == "score":
        return TrainHooks(after_score_batch=fire)
    return TrainHooks(after_save=fire) if phase == "save" else TrainHooks(after_step=fire)


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[2:], train_hooks=hooks_for(sys.argv[1])))
