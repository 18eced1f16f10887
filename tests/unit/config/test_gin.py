"""The configuration boundary: gin parsed once into an explicit RunConfig."""

import gin
import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run
from tinylm_jax.errors import ConfigError


def test_parse_returns_every_config_and_the_operative_text(gin_clean):
    config = config_lib.parse(["experiments/demo.gin"], ["TrainConfig.num_steps = 7"])
    assert config.train.num_steps == 7 and config.model.d_model == 256
    assert config.model.tie_embeddings and config.optimizer.learning_rate == 3e-3
    assert "TrainConfig.num_steps = 7" in config.gin_config
    assert "ModelConfig.d_model = 256" in config.gin_config
    # The saved text parses back to the same run.
    assert config_lib.parse(gin_params=[config.gin_config]).replace(gin_config="") == (
        config.replace(gin_config="")
    )


def test_constructing_a_config_never_reads_gin(gin_clean):
    config_lib.parse(gin_params=["ModelConfig.d_model = 96", "TrainConfig.seq_len = 17"])
    assert ModelConfig().d_model == 256 and TrainConfig().seq_len == 256
    assert RunConfig().model == ModelConfig()


def test_two_runs_with_different_models_live_in_one_process(gin_clean):
    parent = RunConfig(
        model=ModelConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=4, ffn_dim=64),
        train=TrainConfig(batch_size=8, seq_len=16),
    )
    child = parent.replace(model=parent.model.replace(d_model=16, n_layers=2, n_heads=2))
    gin.clear_config()  # neither build reads gin
    big, small = build_run(parent), build_run(child)
    assert big.abstract.params["layers_2"]["attn"]["q_proj"].shape == (32, 4, 8)
    assert small.abstract.params["layers_1"]["attn"]["q_proj"].shape == (16, 2, 8)
    assert "layers_2" not in small.abstract.params


def test_cross_config_errors_are_caught_at_the_boundary(gin_clean):
    with pytest.raises(ConfigError, match="seq_len=4096 exceeds ModelConfig.max_seq_len"):
        config_lib.parse(["models/tiny_test.gin"], ["TrainConfig.seq_len = 4096"])


def test_library_code_constructs_no_config_from_gin():
    """`XConfig()` appears only at the boundary (config/gin.py) in the package."""
    import pathlib
    import re

    package = pathlib.Path(config_lib.__file__).parents[1]
    pattern = re.compile(r"\b(Model|Train|Optimizer|Mesh|Data|Checkpoint|Rounds|Inherit)Config\(\)")
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path != package / "config" / "gin.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "default_factory" not in line
    ]
    assert offenders == []
