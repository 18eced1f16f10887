"""Where the persistent compilation cache goes: env var, config, JAX's own, the data dir."""

import jax
import pytest

from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine import compilation_cache


@pytest.fixture
def no_cache_env(monkeypatch):
    for name in (
        compilation_cache.ENV,
        "JAX_COMPILATION_CACHE_DIR",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        "TINYLM_DATA_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def jax_updates(monkeypatch):
    """Records jax.config.update calls instead of changing this test process's cache."""
    calls: dict = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: calls.__setitem__(name, value))
    return calls


def test_default_is_under_the_data_dir(no_cache_env, tmp_path, jax_updates):
    data = DataConfig(data_dir=str(tmp_path))
    directory = compilation_cache.enable(TrainConfig(), data)
    assert directory == str(tmp_path.resolve() / "jax_compilation_cache")
    assert jax_updates["jax_compilation_cache_dir"] == directory
    assert (tmp_path / "jax_compilation_cache").is_dir()
    assert jax_updates["jax_persistent_cache_min_compile_time_secs"] < 1


def test_env_var_beats_the_config_and_off_disables(no_cache_env, tmp_path, jax_updates):
    train = TrainConfig(compilation_cache=str(tmp_path / "from_config"))
    assert compilation_cache.cache_dir(train, DataConfig()) == str(tmp_path / "from_config")
    no_cache_env.setenv(compilation_cache.ENV, str(tmp_path / "from_env"))
    assert compilation_cache.cache_dir(train, DataConfig()) == str(tmp_path / "from_env")
    no_cache_env.setenv(compilation_cache.ENV, "off")
    assert compilation_cache.enable(train, DataConfig()) is None
    assert jax_updates == {"jax_enable_compilation_cache": False}


def test_config_off_disables(no_cache_env, jax_updates):
    assert compilation_cache.enable(TrainConfig(compilation_cache="off"), DataConfig()) is None
    assert jax_updates == {"jax_enable_compilation_cache": False}


def test_jax_own_setting_is_left_alone(no_cache_env, tmp_path, jax_updates):
    """The test suite (tests/conftest.py) sets JAX_COMPILATION_CACHE_DIR; it stays in charge."""
    no_cache_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path))
    assert compilation_cache.enable(TrainConfig(), DataConfig()) == str(tmp_path)
    assert jax_updates == {}


def test_an_unwritable_dir_turns_the_cache_off_not_the_run(no_cache_env, tmp_path, jax_updates):
    blocker = tmp_path / "file"
    blocker.write_text("")
    train = TrainConfig(compilation_cache=str(blocker / "cache"))
    assert compilation_cache.enable(train, DataConfig()) is None
    assert jax_updates == {}
