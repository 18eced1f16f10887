"""gs:// against a local GCS emulator on 127.0.0.1 (the `gcs` fixture): a workdir end to end
(train, SIGKILL, resume, sample, eval and plot, with every run file in the bucket); a run whose
writes fail with 503 now and then (the fault battery's storage hiccup), which the storage
clients retry; and a prepared dataset in the bucket that a two-round run trains on, is killed
and resumes."""

import json
import signal
import subprocess
import sys

import pytest
from etils import epath

from tests.gcs_emulator import BUCKET, failing_writes
from tests.helpers import tiny_run, train_losses

STEPS = 6
FLAGS = ["--gin_file=models/tiny_test.gin"] + [
    f"--gin_param={p}"
    for p in tiny_run(steps=STEPS)
    + [
        "TrainConfig.eval_steps = 1",
        "TrainConfig.eval_every = 0",
        "CheckpointConfig.every_steps = 2",
        "MeshConfig.num_devices = 1",
        "MeshConfig.fsdp = 1",
        "peak_flops_per_device.override = 1e9",
    ]
]


def tinylm(env, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    program = ["tests.fault_runner", fault] if fault else ["tinylm_jax.cli"]
    return subprocess.run(
        [sys.executable, "-m", *program, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def bucket_path(*parts: str) -> epath.Path:
    """A path read afresh: this process's gcsfs caches listings that the runs have changed."""
    import fsspec

    fsspec.filesystem("gcs", finalize_on_close=True).invalidate_cache()  # epath's instance
    return epath.Path(*parts)


def losses(workdir) -> dict[int, float]:
    lines = bucket_path(workdir, "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(gcs, data_dir, tmp_path_factory):
    """The same run in a local workdir."""
    local = tmp_path_factory.mktemp("uninterrupted")
    done = tinylm(gcs, "train", f"--workdir={local}", *FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    return local


@pytest.mark.slow
def test_a_gs_workdir_trains_is_killed_resumes_and_serves(gcs, uninterrupted):
    local = uninterrupted
    remote = f"gs://{BUCKET}/runs/tiny"
    killed = tinylm(gcs, "train", f"--workdir={remote}", *FLAGS, fault="KILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    files = {p.name for p in bucket_path(remote).iterdir()}
    assert {"config.gin", "tokenizer.model", "checkpoints"} <= files
    assert [p.name for p in bucket_path(remote, "checkpoints").iterdir() if p.name.isdigit()] == [
        "2"
    ]

    resumed = tinylm(gcs, "train", f"--workdir={remote}", *FLAGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "training 6 steps from step 2" in resumed.stdout
    logged, expected = losses(remote), losses(local)
    assert set(range(3, STEPS + 1)) <= logged.keys()
    assert logged == {step: expected[step] for step in logged}  # as if never interrupted
    assert any(bucket_path(remote, "tensorboard").iterdir())

    sample = tinylm(gcs, "sample", f"--workdir={remote}", "--prompt=import os", "--json")
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert json.loads(sample.stdout.splitlines()[-1])["prompt"] == "import os"
    evaluated = tinylm(gcs, "eval", f"--workdir={remote}", "--eval_steps=1")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.splitlines()[-1])["eval_bits_per_byte"] > 0
    plotted = tinylm(gcs, "plot", f"--workdir={remote}", f"--out={remote}/curves.png")
    assert plotted.returncode == 0, plotted.stderr[-3000:]
    assert bucket_path(remote, "curves.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_writes_that_fail_with_503_are_retried_and_the_run_is_unchanged(gcs, uninterrupted):
    remote = f"gs://{BUCKET}/runs/flaky"
    with failing_writes(every=5) as failed:
        run = tinylm(gcs, "train", f"--workdir={remote}", *FLAGS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(failed) >= 5, failed  # checkpoints, metrics and config writes all met some
    assert losses(remote) == losses(uninterrupted)  # metrics.jsonl whole, every step as local
    saved = [p.name for p in bucket_path(remote, "checkpoints").iterdir() if p.name.isdigit()]
    assert str(STEPS) in saved
    assert "".join(f"{p}" for p in bucket_path(remote).iterdir()).count(".tmp") == 0


@pytest.mark.slow
def test_a_gs_prepared_dataset_trains_two_rounds_is_killed_and_resumes(gcs, tmp_path):
    prepared = f"gs://{BUCKET}/prepared/tiny"
    params = [p.removeprefix("--gin_param=") for p in FLAGS[1:]]
    made = tinylm(
        gcs, "data", "prepare", f"--out={prepared}", "--runner=none",
        *(f"--gin_param={p}" for p in [*params, "DataConfig.records_per_shard = 16"]),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = json.loads(bucket_path(prepared, "manifest.json").read_text())
    assert len(manifest["splits"]["train"]["shards"]) > 1

    rounds = [
        "RoundsConfig.num_rounds = 2",  # round 2 replays records by stable id
        "RoundsConfig.partitions = 2",
        "RoundsConfig.score_batch_size = 64",
    ]
    own = tinylm(gcs, "train", f"--workdir={tmp_path / 'own'}", *FLAGS, *_params(rounds))
    assert own.returncode == 0, own.stderr[-3000:]
    on_gs = [*rounds, f"DataConfig.prepared = '{prepared}'", "DataConfig.dataset = 'none'"]
    run = tmp_path / "run"
    killed = tinylm(gcs, "train", f"--workdir={run}", *FLAGS, *_params(on_gs), fault="KILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = tinylm(gcs, "train", f"--workdir={run}", *FLAGS, *_params(on_gs))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "round 2/2: steps 4-6 on" in resumed.stdout, resumed.stdout[-2000:]
    expected, logged = train_losses(tmp_path / "own"), train_losses(run)
    assert set(range(1, STEPS + 1)) <= logged.keys()
    assert logged == {step: expected[step] for step in logged}  # bit-exact, as if uninterrupted


def _params(params: list[str]) -> list[str]:
    return [f"--gin_param={p}" for p in params]
