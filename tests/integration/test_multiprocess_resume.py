"""Kill-and-resume of `tinylm train` subprocesses: SIGKILL (also mid-save), SIGTERM, and a run of
2 processes x 4 CPU devices that loses a process, is preempted, resumes and matches 1 x 8.

Faults are injected by `tests/fault_runner.py` (a train hook). All runs
share a persistent XLA compilation cache, so only the first one compiles.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers import free_port, tiny_run, train_losses, xla_flags
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.parallel.preemption import PREEMPTED_EXIT_CODE

# Long enough that a preemption noticed at step 5 is agreed on by both processes before the end.
STEPS = 16
FLAGS = ["--gin_file=models/tiny_test.gin"] + [
    f"--gin_param={p}"
    for p in tiny_run(steps=STEPS)
    + [
        "TrainConfig.eval_steps = 0",
        "CheckpointConfig.async_save = True",
        "CheckpointConfig.every_steps = 2",
        "peak_flops_per_device.override = 1e9",
    ]
]


# Only a guard against a hung test: runs end in 1-3 minutes, more on a loaded 2-core machine.
DEADLINE_S = 900


def env(devices: int, cache: Path) -> dict[str, str]:
    out = dict(os.environ)
    out.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=xla_flags(devices),
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return out


def start(workdir: Path, cache: Path, devices: int, fault=None, extra=()) -> subprocess.Popen:
    program = ["tests.fault_runner", fault] if fault else ["tinylm_jax.cli"]
    return subprocess.Popen(
        [sys.executable, "-m", *program, "train", f"--workdir={workdir}", *FLAGS, *extra],
        env=env(devices, cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def train_once(workdir: Path, cache: Path, fault=None, extra=()) -> tuple[int, str]:
    proc = start(workdir, cache, 8, fault, extra)
    out, _ = proc.communicate(timeout=DEADLINE_S)
    return proc.returncode, out


def train_two_processes(workdir: Path, cache: Path, faults=(None, None), extra=()):
    """Runs 2 processes x 4 devices; returns [(returncode, output, exit time)] per process;
    the exit time is None for a process still running at the deadline (killed here)."""
    port = free_port()
    procs = [
        start(
            workdir,
            cache,
            4,
            faults[i],
            [
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                "--heartbeat_timeout_seconds=10",
                *extra,
            ],
        )
        for i in range(2)
    ]
    exited = [None, None]
    deadline = time.monotonic() + DEADLINE_S
    while None in exited and time.monotonic() < deadline:
        for i, proc in enumerate(procs):
            if exited[i] is None and proc.poll() is not None:
                exited[i] = time.monotonic()
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    return [(p.wait(), p.stdout.read(), t) for p, t in zip(procs, exited, strict=True)]


def params_at(workdir: Path, step: int) -> list[np.ndarray]:
    params, _ = ckpt.load_params(workdir, step)
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


def steps_saved(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir, cache) -> Path:
    """An uninterrupted 1 process x 8 devices run that keeps a checkpoint of every step."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    code, out = train_once(
        workdir,
        cache,
        extra=[
            "--gin_param=CheckpointConfig.every_steps = 1",
            f"--gin_param=CheckpointConfig.keep = {STEPS}",
        ],
    )
    assert code == 0, out[-3000:]
    assert steps_saved(workdir) == list(range(1, STEPS + 1))
    return workdir


@pytest.mark.slow
def test_killed_mid_save_and_preempted_run_resumes_bit_exactly(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    code, out = train_once(workdir, cache, fault="KILL@4:save")
    assert code == -signal.SIGKILL, out[-3000:]
    # Killed while step 4 was being written: only 2 is complete, 4 is a temporary directory.
    assert steps_saved(workdir) == [2]
    assert list((workdir / "checkpoints").glob(f"4{ckpt.TMP_MARKER}*")), out[-3000:]

    code, out = train_once(workdir, cache, fault="TERM@6")
    assert code == PREEMPTED_EXIT_CODE, out[-3000:]
    assert f"training {STEPS} steps from step 2" in out and "SIGTERM: saved step 6" in out
    assert steps_saved(workdir)[-1] == 6

    code, out = train_once(workdir, cache)
    assert code == 0 and f"training {STEPS} steps from step 6" in out, out[-3000:]
    assert train_losses(workdir) == train_losses(reference)  # every step, exactly
    for a, b in zip(params_at(workdir, STEPS), params_at(reference, STEPS), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_survive_a_dead_peer_and_preemption_and_match_one(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    (code0, out0, exit0), (code1, out1, exit1) = train_two_processes(
        workdir, cache, faults=(None, "KILL@5")
    )
    assert code1 == -signal.SIGKILL and "KILL@5 fires" in out1, out1[-3000:]
    # The survivor stops on its own (heartbeat timeout 10 s, or the broken collective) ...
    assert exit0 is not None and exit0 - exit1 < 60 and code0 != 0, out0[-3000:]
    assert steps_saved(workdir) in ([2], [2, 4]), steps_saved(workdir)

    # ... and the resumed pair, preempted on one process, stops on both at the same step.
    results = train_two_processes(workdir, cache, faults=(None, "TERM@5"))
    for code, out, _ in results:
        assert code == PREEMPTED_EXIT_CODE, out[-3000:]
    stopped = steps_saved(workdir)[-1]
    assert 5 <= stopped <= STEPS and f"SIGTERM: saved step {stopped}" in results[0][1]

    losses, expected = train_losses(workdir), train_losses(reference)
    assert sorted(losses) == list(range(1, stopped + 1))
    for step, loss in losses.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step
    for a, b in zip(params_at(workdir, stopped), params_at(reference, stopped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
