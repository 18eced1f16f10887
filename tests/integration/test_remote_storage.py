"""A gs:// workdir end to end against a local GCS emulator on 127.0.0.1: train, SIGKILL,
resume, sample, eval and plot, with every run file (config.gin, tokenizer, Orbax checkpoints,
metrics.jsonl, TensorBoard events) in the bucket; and a run whose writes fail with 503 now and
then (the fault battery's storage hiccup), which the storage clients retry. epath reaches the
emulator through gcsfs (STORAGE_EMULATOR_HOST), Orbax's arrays through TensorStore
(TENSORSTORE_GCS_HTTP_URL)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from etils import epath

from tests.helpers import tiny_run

pytest.importorskip("gcsfs")
emulator = pytest.importorskip("gcp_storage_emulator.server")

BUCKET = "tinylm-test"
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


def _replace_handler(original, replacement) -> None:
    from gcp_storage_emulator import server

    for _, methods in server.HANDLERS:
        for method, handler in methods.items():
            if handler is original:
                methods[method] = replacement


@contextlib.contextmanager
def failing_writes(every: int):
    """Every `every`-th object write the emulator receives (uploads, resumable chunks,
    composes) answers 503 Service Unavailable and stores nothing; yields the list of the
    failed calls' numbers."""
    from http import HTTPStatus

    from gcp_storage_emulator.handlers import objects

    failed: list[int] = []
    calls = [0]
    originals = (objects.insert, objects.upload_partial, objects.compose)

    def flaky(original):
        def handler(request, response, storage, *args, **kwargs):
            calls[0] += 1
            if calls[0] % every:
                return original(request, response, storage, *args, **kwargs)
            failed.append(calls[0])
            response.status = HTTPStatus.SERVICE_UNAVAILABLE
            response.json({"error": {"code": 503, "message": "injected: try again"}})

        return handler

    replacements = [flaky(original) for original in originals]
    for original, replacement in zip(originals, replacements, strict=True):
        _replace_handler(original, replacement)
    try:
        yield failed
    finally:
        for original, replacement in zip(originals, replacements, strict=True):
            _replace_handler(replacement, original)


def _send_generation_headers() -> None:
    """Real GCS names an object's generation in the headers of every media download, and
    TensorStore (Orbax's array store) needs it to update its manifests; this emulator omits
    it, so the test adds it to the emulator's download handler."""
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    if getattr(original, "sends_generation", False):
        return

    def download(request, response, storage, *args, **kwargs):
        original(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # noqa: BLE001 - a missing object already answered 404
            return
        response["x-goog-generation"] = obj["generation"]
        response["x-goog-metageneration"] = obj.get("metageneration", "1")

    download.sends_generation = True
    objects.download = download
    _replace_handler(original, download)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, data_dir):
    """The emulator's environment: set here for this process, passed to subprocesses."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _send_generation_headers()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    variables = {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TensorStore: skip credential lookup
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla_cache")),
    }
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update({k: v for k, v in variables.items() if k.startswith(("STORAGE", "TENSOR"))})
    yield {**os.environ, **variables}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


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
