"""The runner: jobs (chains of commands) run here, in parallel, or emitted for SLURM."""

import shlex
import subprocess
import threading
import time

import pytest

from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import runner


@pytest.fixture
def fake_processes(monkeypatch):
    """Stands in for subprocess.run: a command 'fail N' exits N, 'sleep' takes 0.2 s; records
    the commands and the most that ran at once."""
    seen = {"commands": [], "running": 0, "most": 0, "stdout": []}
    lock = threading.Lock()

    def fake_run(command, check=False, stdout=None, stderr=None, text=None):
        with lock:
            seen["commands"].append(list(command))
            seen["stdout"].append(stdout)
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        if command[0] == "sleep":
            time.sleep(0.2)
        with lock:
            seen["running"] -= 1
        code = int(command[1]) if command[0] == "fail" else 0
        return subprocess.CompletedProcess(command, code, stdout='line\n{"a": 1}\n')

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    return seen


def test_a_job_stops_at_its_first_failure(fake_processes, capsys):
    job = runner.job("arm", [["ok"], ["fail", "3"], ["never"]])
    assert runner.run_job(job) == 3
    assert fake_processes["commands"] == [["ok"], ["fail", "3"]]
    assert "arm failed with exit status 3: fail 3" in capsys.readouterr().out


def test_jobs_run_parallel_at_a_time_and_log_to_their_file(fake_processes, tmp_path):
    jobs = [runner.job(f"j{i}", [["sleep"]], tmp_path / f"j{i}" / "train.log") for i in range(4)]
    assert runner.run(jobs, parallel=2) == {"j0": 0, "j1": 0, "j2": 0, "j3": 0}
    assert fake_processes["most"] == 2
    assert all(
        out is not None and out.name.endswith("train.log") for out in fake_processes["stdout"]
    )
    fake_processes["most"] = 0
    runner.run(jobs)  # one at a time by default
    assert fake_processes["most"] == 1


def test_output_returns_stdout_or_names_the_failed_command(fake_processes):
    assert runner.output(["info"]).splitlines()[-1] == '{"a": 1}'
    with pytest.raises(ConfigError, match="`fail 2` failed with exit status 2"):
        runner.output(["fail", "2"])


def test_emit_writes_a_slurm_array_with_one_task_per_job(tmp_path):
    jobs = [
        runner.job("a", [["tinylm", "inherit", "--workdir=a b"], ["tinylm", "train"]]),
        runner.job("b", [["tinylm", "train"]]),
    ]
    listing = runner.emit(jobs, "commands", "sweep", tmp_path)
    assert listing.splitlines() == [
        "tinylm inherit '--workdir=a b' && tinylm train",
        "tinylm train",
    ]
    script = runner.emit(jobs, "slurm", "sweep", tmp_path)
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --array=0-1" in script
    assert f"#SBATCH --output={tmp_path}/slurm-%A_%a.out" in script
    assert all(shlex.quote(line) in script for line in listing.splitlines())
    with pytest.raises(ConfigError, match="nothing to emit"):
        runner.emit([], "slurm", "sweep", tmp_path)
    with pytest.raises(ConfigError, match="--emit must be one of"):
        runner.emit(jobs, "pbs", "sweep", tmp_path)
