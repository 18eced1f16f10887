"""`ModelConfig.dtype='auto'`: bfloat16 compute on GPU/TPU, float32 on CPU; float16 refused."""

import jax
import jax.numpy as jnp
import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.model import ModelConfig, resolve_dtype
from tinylm_jax.errors import ConfigError


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("cpu", "float32"), ("gpu", "bfloat16"), ("cuda", "bfloat16"), ("tpu", "bfloat16")],
)
def test_auto_resolves_per_platform(monkeypatch, platform, expected):
    monkeypatch.setattr(jax, "default_backend", lambda: platform)
    config = ModelConfig()
    assert config.dtype == "auto" and config.param_dtype == "float32"
    assert config.resolved_dtype == expected
    assert config.compute_dtype == jnp.dtype(expected)
    assert config.weight_dtype == jnp.float32  # params (and so optimizer state) stay float32


@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_an_explicit_dtype_wins_on_every_platform(platform):
    assert resolve_dtype("bfloat16", platform) == "bfloat16"
    assert resolve_dtype("float32", platform) == "float32"


@pytest.mark.parametrize("field", ["dtype", "param_dtype"])
def test_float16_is_refused_with_the_fix(field):
    with pytest.raises(ConfigError, match=rf"ModelConfig.{field}: float16 needs dynamic loss"):
        ModelConfig(**{field: "float16"})


def test_auto_is_not_a_param_dtype():
    with pytest.raises(ConfigError, match="param_dtype"):
        ModelConfig(param_dtype="auto")


def named_run_configs() -> list[str]:
    root = config_lib.CONFIGS_DIR
    return sorted(
        str(p.relative_to(root))
        for d in ("models", "experiments")
        for p in (root / d).glob("*.gin")
    )


@pytest.mark.parametrize("name", named_run_configs())
def test_every_named_config_computes_in_bfloat16_on_accelerators(name, monkeypatch, gin_clean):
    """No named config pins float32 compute: on GPU/TPU each trains in bf16 as it stands."""
    model = config_lib.parse([name], []).model
    for platform, expected in (("gpu", "bfloat16"), ("tpu", "bfloat16"), ("cpu", "float32")):
        monkeypatch.setattr(jax, "default_backend", lambda p=platform: p)
        assert model.resolved_dtype == expected, (name, platform)
    assert model.weight_dtype == jnp.float32
