"""Fault battery, relaunch: the `launch/` scripts rerun a job that lost a process (exit 75, 134
or 137) from its last checkpoint, a bounded number of times, and never one that failed
otherwise. Fake `srun`, `scontrol`, `gcloud` and `tinylm` executables on PATH exit with the
codes the test scripts and log each call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A fake command: logs its name and arguments; a run of the job (srun, gcloud's ssh, tinylm)
# exits with the next code of $FAKE_EXITS (then 0); scontrol and gcloud's copy and install
# steps pass.
FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$(basename "$0") $*" in scontrol* | *scp* | *"pip install"*) exit 0 ;; esac
calls=$(grep -c "" "$FAKE_COUNT" 2>/dev/null || true)
echo x >> "$FAKE_COUNT"
read -r -a exits <<<"$FAKE_EXITS"
exit "${exits[$calls]:-0}"
"""


def launch(tmp_path: Path, script: list[str], exits: list[int], **env: str):
    """Runs a launcher with every faked command on PATH; returns (exit code, runs, calls, err)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("srun", "scontrol", "gcloud", "tinylm"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    log, count = tmp_path / "calls.log", tmp_path / "runs"
    for path in (log, count):
        path.unlink(missing_ok=True)
    run_env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_EXITS": " ".join(map(str, exits)),
        "FAKE_LOG": str(log),
        "FAKE_COUNT": str(count),
        **env,
    }
    proc = subprocess.run(
        ["bash", *script], env=run_env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    runs = len(count.read_text().splitlines()) if count.exists() else 0
    calls = log.read_text().splitlines() if log.exists() else []
    return proc.returncode, runs, calls, proc.stderr


def slurm(workdir: Path) -> list[str]:
    return [str(REPO / "launch/slurm_gpu.sbatch"), f"--workdir={workdir}"]


def tpu(workdir: Path) -> list[str]:
    return [str(REPO / "launch/tpu_pod.sh"), "my-tpu", "us-east5-a", "--", f"--workdir={workdir}"]


def local(workdir: Path) -> list[str]:
    return [str(REPO / "launch/local_multiprocess.sh"), "1", "1", "--", f"--workdir={workdir}"]


LAUNCHERS = {"slurm": slurm, "tpu": tpu, "local": local}
SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(REPO)}

# (exit codes of successive runs, the launcher's exit code, how many runs)
CASES = [
    ([75, 75, 0], 0, 3),  # a lost peer twice, then done
    ([134, 137, 0], 0, 3),  # the runtime's abort, a SIGKILL
    ([1], 1, 1),  # a crash a relaunch cannot fix
    ([2], 2, 1),  # a user error
    ([75, 75, 75, 75, 75, 75], 75, 4),  # bounded: 1 run + TINYLM_MAX_RESTARTS (3) relaunches
]


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("exits, code, runs", CASES, ids=["75x2", "134-137", "1", "2", "bound"])
def test_the_launchers_relaunch_on_a_lost_process_only_and_boundedly(
    launcher, exits, code, runs, tmp_path
):
    (tmp_path / "run" / "checkpoints" / "40").mkdir(parents=True)
    got, made, _, err = launch(tmp_path, LAUNCHERS[launcher](tmp_path / "run"), exits, **SLURM_ENV)
    assert (got, made) == (code, runs), err[-2000:]
    if runs > 1:
        assert "last good checkpoint: step 40" in err and "relaunching all processes (1/3)" in err
    if exits[0] == 75 and code == 75:
        assert "gave up after 3 relaunches" in err


def test_slurm_requeues_a_preempted_job_boundedly(tmp_path):
    code, runs, calls, err = launch(tmp_path, slurm(tmp_path / "run"), [143], **SLURM_ENV)
    assert (code, runs) == (143, 1) and "scontrol requeue 4242" in calls, (calls, err)
    assert "requeueing job 4242 (1/3)" in err
    code, runs, calls, _ = launch(
        tmp_path, slurm(tmp_path / "run"), [143], **SLURM_ENV, SLURM_RESTART_COUNT="3"
    )
    assert (code, runs) == (143, 1) and not any("scontrol" in c for c in calls)


def test_the_tpu_launcher_installs_once_and_reruns_only_the_command(tmp_path):
    _, _, calls, err = launch(tmp_path, tpu(tmp_path / "run"), [75, 0])
    assert sum("pip install" in c for c in calls) == 1, (calls, err)
    runs = [c for c in calls if "tinylm train --distributed" in c]
    assert len(runs) == 2 and all("--worker=all" in c for c in runs), calls
