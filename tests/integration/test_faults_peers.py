"""Fault battery, dead peers: `launch/local_multiprocess.sh` runs 2 processes x 4 CPU devices;
process 1 is SIGKILLed after step 5. The survivor stops within 30 s (heartbeat 10 s here, 15 s
by default), the launcher names the lost process and the last good checkpoint, relaunches both
once, and the relaunched run finishes with exactly the losses and params of an uninterrupted
run of the same 2 x 4 layout."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import train_losses

from .test_multiprocess_resume import (  # noqa: F401 - fixtures
    FLAGS,
    STEPS,
    cache,
    env,
    params_at,
    train_two_processes,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_launcher_relaunches_after_a_lost_peer_and_resumes(cache, tmp_path):  # noqa: F811
    reference = tmp_path / "uninterrupted"
    finished = train_two_processes(reference, cache)
    assert [code for code, _, _ in finished] == [0, 0], [out[-2000:] for _, out, _ in finished]
    workdir = tmp_path / "run"
    run_env = env(4, cache)
    run_env.update(
        TINYLM=f"{sys.executable} -m tests.fault_runner KILL@5",
        TINYLM_FAULT_PROCESS="1",
        TINYLM_FAULT_MARKER=str(tmp_path / "fired"),
        PYTHONPATH=os.pathsep.join([str(REPO), run_env.get("PYTHONPATH", "")]),
    )
    launcher = [str(REPO / "launch" / "local_multiprocess.sh"), "2", "4", "--"]
    proc = subprocess.run(
        [*launcher, f"--workdir={workdir}", *FLAGS, "--heartbeat_timeout_seconds=10"],
        env=run_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    err = proc.stderr
    assert proc.returncode == 0, (proc.stdout[-2000:], err[-4000:])
    assert "KILL@5 fires" in err and "launch: process 1 exited 137" in err, err[-4000:]
    stopped = re.search(r"process 0 stopped (\d+) s after process 1 \(exit (\d+)\)", err)
    assert stopped and int(stopped[1]) <= 30 and stopped[2] in ("75", "134"), err[-4000:]
    # Step 4's async save may have been cut short by the kill after step 5: then 2 is the last.
    last = re.search(r"last good checkpoint: step (\d+)", err)
    assert last and last[1] in ("2", "4") and "relaunching all processes (1/3)" in err, err
    assert proc.stdout.count(f"training {STEPS} steps from step {last[1]}") == 1, proc.stdout

    losses = train_losses(workdir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses == train_losses(reference)  # bit-exact, as if never interrupted
    for a, b in zip(params_at(workdir, STEPS), params_at(reference, STEPS), strict=True):
        np.testing.assert_array_equal(a, b)
