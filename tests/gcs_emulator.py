"""A local GCS emulator on 127.0.0.1 for the tests of gs:// paths (workdirs, prepared
datasets): epath reaches it through gcsfs (STORAGE_EMULATOR_HOST), Orbax's arrays through
TensorStore (TENSORSTORE_GCS_HTTP_URL). The `gcs` fixture (tests/conftest.py) starts it."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import free_port, xla_flags

BUCKET = "tinylm-test"


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


def _replace_handler(original, replacement) -> None:
    from gcp_storage_emulator import server

    for _, methods in server.HANDLERS:
        for method, handler in methods.items():
            if handler is original:
                methods[method] = replacement


@contextlib.contextmanager
def failing_writes(every: int) -> Iterator[list[int]]:
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


@contextlib.contextmanager
def running(xla_cache: Path) -> Iterator[dict[str, str]]:
    """A started emulator with bucket BUCKET; yields the environment for subprocesses (the
    storage variables are also set in this process while it runs)."""
    from gcp_storage_emulator import server as emulator

    port = free_port()
    _send_generation_headers()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    variables = {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",  # TensorStore: skip credential lookup
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags(1),
        "JAX_COMPILATION_CACHE_DIR": str(xla_cache),
    }
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update({k: v for k, v in variables.items() if k.startswith(("STORAGE", "TENSOR"))})
    try:
        yield {**os.environ, **variables}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
