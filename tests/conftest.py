"""Test set-up: 8 virtual CPU devices (set before JAX is imported) and a shared data cache."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


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
