"""Fault battery, SIGTERM in every phase: each phase, started as a `tinylm` subprocess, gets
SIGTERM from outside once it is under way (its own log line says so), exits 143 within a few
seconds, leaves no half-written file (no temporary file, no unfinished checkpoint, no child
workdir without its config), and the same command run again completes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import TINY_DATA, xla_flags
from tests.support.cmc import DELTA, write_records
from tinylm_jax.cli import main as cli
from tinylm_jax.engine import checkpoint as ckpt

# The parent holds 30% of 60 stdlib modules out for validation (thousands of sequences), so
# scoring and evaluation at 8 sequences a batch last seconds.
DATA = [*TINY_DATA, "DataConfig.validation_fraction = 0.3"]
PARENT = [
    *DATA,
    "TrainConfig.num_steps = 2",
    "TrainConfig.batch_size = 8",
    "TrainConfig.seq_len = 32",
    "TrainConfig.eval_steps = 0",
    "TrainConfig.eval_batch_size = 8",
    "CheckpointConfig.async_save = False",
]
STOP_SECONDS = 15  # SIGTERM to exit, on a loaded 2-core host


def gin(*params: str) -> list[str]:
    return ["--gin_file=models/tiny_test.gin", *(f"--gin_param={p}" for p in params)]


@pytest.fixture(scope="module")
def parent(tmp_path_factory, data_dir) -> Path:
    workdir = tmp_path_factory.mktemp("sigterm") / "parent"
    assert cli.main(["train", f"--workdir={workdir}", *gin(*PARENT)]) == 0
    return workdir


@dataclasses.dataclass(frozen=True)
class Phase:
    """A command (`argv(parent, tmp)`), the log line that shows it is under way, and what its
    rerun must have written (`done(tmp)`)."""

    name: str  # the test id
    argv: Callable[[Path, Path], list[str]]
    started: str
    done: Callable[[Path], bool]


def _scores_complete(tmp: Path) -> bool:
    lines = (tmp / "scores.jsonl").read_text().splitlines()
    return len(lines) > 1000 and all("loss" in json.loads(line) for line in lines)


def _rounds_done(tmp: Path) -> bool:
    return ckpt.complete_steps(ckpt.checkpoint_dir(tmp / "run"))[0] == 4


PHASES = [
    Phase(
        "score",
        lambda p, t: ["score", f"--workdir={p}", f"--out={t / 'scores.jsonl'}", "--batch_size=8"],
        "scoring",
        _scores_complete,
    ),
    Phase(
        "train-scoring-pass",
        lambda p, t: (
            ["train", f"--workdir={t / 'run'}"]
            + gin(
                *PARENT,
                "TrainConfig.num_steps = 4",
                "RoundsConfig.num_rounds = 2",
                "RoundsConfig.score_batch_size = 8",
            )
        ),
        "scoring",
        _rounds_done,
    ),
    Phase(
        "inherit-learnable-masks",
        lambda p, t: (
            ["inherit", f"--parent={p}", f"--workdir={t / 'child'}"]
            + gin(
                *PARENT,
                "ModelConfig.ffn_dim = 48",
                "InheritConfig.width_metric = 'learnable_mask'",
                "InheritConfig.mask_steps = 600",
            )
        ),
        "width importance",
        lambda t: (t / "child" / "config.gin").exists() and (t / "child/inheritance.json").exists(),
    ),
    Phase(
        "tokenizer-compress",
        lambda p, t: (
            [
                "tokenizer",
                "compress",
                f"--tokenizer={p / 'tokenizer.model'}",
                "--vocab_size=300",
                f"--out={t / 'small'}",
            ]
            + gin(*TINY_DATA[:-3], "DataConfig.max_documents = 600")
        ),
        "Counting",
        lambda t: (t / "small" / "report.json").exists(),
    ),
    Phase(
        "eval",
        lambda p, t: ["eval", f"--workdir={p}"],
        "held-out eval",
        lambda t: True,  # the rerun's exit 0 and its JSON line are checked below
    ),
    Phase(
        "cmc-train",
        lambda p, t: (
            [
                "cmc",
                "train",
                f"--template={p}",
                f"--workdir={t / 'delta'}",
                f"--data={write_records(t / 'records.jsonl')}",
            ]
            + gin(*DELTA, "TrainConfig.num_steps = 600", "CheckpointConfig.every_steps = 300")[1:]
        ),
        "cmc: training the delta",
        lambda t: ckpt.complete_steps(ckpt.checkpoint_dir(t / "delta"))[0] == 600,
    ),
]


def tinylm(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    return subprocess.Popen(
        [sys.executable, "-m", "tinylm_jax.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def terminate_when(proc: subprocess.Popen, started: str) -> tuple[int, str, float]:
    """Sends SIGTERM once `proc` prints a line holding `started`; returns its exit code, its
    output and the seconds from SIGTERM to its exit."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if started in line:
            break
    else:
        pytest.fail(f"the phase never started ({started!r} not printed):\n{''.join(seen)[-3000:]}")
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest, time.perf_counter() - sent


def half_written(root: Path) -> list[str]:
    """Temporary files and unfinished checkpoints under `root`, and child workdirs holding a
    checkpoint without their config (or a config without a checkpoint)."""
    found = [str(p) for p in root.rglob("*") if ".tmp" in p.name or ckpt.TMP_MARKER in p.name]
    for checkpoints in root.rglob("checkpoints"):
        has_config = (checkpoints.parent / "config.gin").exists()
        if bool(ckpt.complete_steps(checkpoints)) and not has_config:
            found.append(f"{checkpoints} without config.gin")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES, ids=[p.name for p in PHASES])
def test_sigterm_stops_the_phase_with_143_and_a_rerun_completes(phase, parent, tmp_path):
    argv = phase.argv(parent, tmp_path)
    code, output, seconds = terminate_when(tinylm(argv), phase.started)
    assert code == 143 and "Traceback" not in output, output[-3000:]
    assert f"tinylm {argv[0]}:" in output, output[-3000:]
    assert half_written(tmp_path) == []
    assert seconds < STOP_SECONDS, f"{seconds:.1f}s from SIGTERM to exit"
    print(f"{phase.name}: exit 143 {seconds:.1f} s after SIGTERM")  # shown with -s

    rerun = tinylm(argv)
    rest, _ = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, rest[-3000:]
    assert phase.done(tmp_path) and half_written(tmp_path) == []
