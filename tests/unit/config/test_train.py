"""`TrainConfig.train_tokens`: a token budget as the alternative to `num_steps`."""

import dataclasses

import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.errors import ConfigError

SHAPE = ["TrainConfig.batch_size = 4", "TrainConfig.seq_len = 64"]


def test_a_token_budget_sets_the_step_count(gin_clean):
    config = config_lib.parse(gin_params=[*SHAPE, "TrainConfig.train_tokens = 1000"])
    assert config.train.num_steps == 4  # ceil(1000 / 256)
    # The operative config records the budget, not a step count: a resume agrees with it.
    assert "TrainConfig.num_steps = None" in config.gin_config
    again = config_lib.parse(gin_params=[config.gin_config])
    assert again.train == config.train
    assert dataclasses.replace(config.train, seed=1).num_steps == 4


def test_without_a_budget_num_steps_is_unchanged(gin_clean):
    assert config_lib.parse().train.num_steps == 1000
    assert config_lib.parse(gin_params=["TrainConfig.num_steps = 7"]).train.num_steps == 7


def test_setting_both_is_an_error_naming_the_fix(gin_clean):
    with pytest.raises(ConfigError, match="both set.*TrainConfig.num_steps = None"):
        config_lib.parse(
            gin_files=["experiments/demo.gin"], gin_params=["TrainConfig.train_tokens = 100000"]
        )
    assert TrainConfig(num_steps=4, train_tokens=1000, batch_size=4, seq_len=64).num_steps == 4


def test_neither_is_an_error():
    with pytest.raises(ConfigError, match="set one"):
        TrainConfig(num_steps=None)  # type: ignore[arg-type]
