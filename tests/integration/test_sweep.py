"""Sweeps: spec expansion into gin overrides, dry runs, and a real two-arm run with a report."""

import json
import shlex
import subprocess
import sys
import threading
import time

import pytest

from tinylm_jax.cli import main as cli
from tinylm_jax.orchestration import grid as sweep
from tinylm_jax.orchestration import runner

SPEC = """
import ml_collections

def get_config():
    return ml_collections.ConfigDict({{
        "name": "tiny",
        "gin_files": ["models/tiny_test.gin"],
        "params": {params},
        "arms": [{{"name": "deep", "params": {{"ModelConfig": {{"n_layers": 2}}}}}},
                 {{"name": "shallow", "params": {{"ModelConfig": {{"n_layers": 1}}}}}}],
        "grid": {grid},
    }})
"""
TINY_PARAMS = {
    "DataConfig": {
        "dataset": "python_stdlib",
        "max_documents": 60,
        "vocab_size": 512,
        "validation_fraction": 0.05,
    },
    "TrainConfig": {
        "num_steps": 2,
        "batch_size": 8,
        "seq_len": 32,
        "log_every": 1,
        "eval_steps": 1,
    },
    "CheckpointConfig": {"async_save": False},
}


def write_spec(tmp_path, params=None, grid=None):
    path = tmp_path / "spec.py"
    path.write_text(SPEC.format(params=params or {}, grid=grid or {}))
    return path


def test_dry_run_prints_runnable_commands(tmp_path, capsys):
    spec_path = write_spec(tmp_path)
    assert (
        cli.main(
            [
                "sweep",
                "run",
                f"--spec={spec_path}",
                f"--root={tmp_path}",
                "--dry_run",
                "--arm=shallow",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(sys.executable)
    assert f"--workdir={tmp_path}/tiny/shallow" in out[0]
    assert "ModelConfig.n_layers = 1" in out[0]
    assert cli.main(["sweep", "run", f"--spec={spec_path}", "--arm=nope", "--dry_run"]) == 2


def test_grid_runs_arms_in_parallel(tmp_path, monkeypatch, capsys):
    running, most, lock = [0], [0], threading.Lock()

    def fake_train(command, check):  # stands in for `tinylm train`; the arm "deep" fails
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return subprocess.CompletedProcess(command, 3 if "/deep" in command[4] else 0)

    monkeypatch.setattr(runner.subprocess, "run", fake_train)
    arms = sweep.expand(sweep.load_spec(write_spec(tmp_path)))
    assert sweep.run(arms, tmp_path, parallel=2) == {"deep": 3, "shallow": 0}
    assert most[0] == 2
    assert "deep failed with exit status 3" in capsys.readouterr().out
    most[0] = 0
    sweep.run(arms, tmp_path)  # one at a time by default
    assert most[0] == 1


def test_grid_emits_a_slurm_array_or_a_command_list(tmp_path, capsys):
    argv = ["sweep", "run", f"--spec={write_spec(tmp_path)}", f"--root={tmp_path}"]
    assert cli.main([*argv, "--emit=commands"]) == 0
    commands = capsys.readouterr().out.splitlines()
    assert [c.split("--workdir=")[1].split()[0] for c in commands] == [
        f"{tmp_path}/tiny/deep",
        f"{tmp_path}/tiny/shallow",
    ]
    assert cli.main([*argv, "--emit=slurm"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#!/bin/bash\n") and "#SBATCH --array=0-1" in script
    assert all(shlex.quote(c) in script for c in commands)
    assert not (tmp_path / "tiny").exists()  # nothing trained


@pytest.mark.slow
def test_two_arm_sweep_trains_and_reports(tmp_path, monkeypatch, capsys):
    # Both arms start together on a cold data cache: one builds each stage, the other waits.
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "cold_cache"))
    spec_path = write_spec(tmp_path, params=TINY_PARAMS)
    argv = ["sweep", "run", f"--spec={spec_path}", f"--root={tmp_path}", "--parallel=2"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(["sweep", "report", f"--spec={spec_path}", f"--root={tmp_path}"]) == 0
    table = capsys.readouterr().out
    assert "| deep | ok | 2 |" in table and "| shallow | ok | 2 |" in table
    rows = json.loads((tmp_path / "tiny" / "report.json").read_text())
    assert all(r["eval_bits_per_byte"] > 0 for r in rows)
    assert "![training curves of every started arm](curves.png)" in table
    assert (tmp_path / "tiny" / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert "](best.png)" in table
    assert (tmp_path / "tiny" / "best.png").read_bytes().startswith(b"\x89PNG")
