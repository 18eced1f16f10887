"""Test set-up: 8 virtual CPU devices (set before JAX is imported), one persistent compilation
cache per suite run shared by every subprocess, a shared data cache, and the markers."""

import os
import shutil
import tempfile
from pathlib import Path

from tests.helpers import xla_flags

os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags(8)}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Subprocess tests (`tinylm train ...`) compile the same steps over and over; a persistent cache
# that all of them (and the xdist workers) share compiles each once. It is fresh per suite run
# (keyed by xdist's run id, or this process), so no result ever depends on an old cache.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
_CACHE_DIR = Path(tempfile.gettempdir()) / f"tinylm-test-jax-cache-{_RUN_ID}"
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(_CACHE_DIR)
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest  # noqa: E402

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        if _INTEGRATION in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):  # the controller, or a run without xdist
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """One data cache per test session, so corpora and tokenizers are built once."""
    path = str(tmp_path_factory.mktemp("tinylm_data"))
    os.environ["TINYLM_DATA_DIR"] = path
    return path


@pytest.fixture
def gin_clean():
    import gin

    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, data_dir):
    """A GCS emulator (tests/gcs_emulator.py) for the module's tests: the environment that
    subprocesses need, also set in this process. Skips without gcsfs or the emulator."""
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator.server")
    from tests.gcs_emulator import running

    with running(tmp_path_factory.mktemp("xla_cache")) as env:
        yield env
