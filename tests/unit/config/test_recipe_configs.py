"""Recipe gins carry their sources' training settings."""

import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.data import pipeline
from tinylm_jax.errors import DataError
from tinylm_jax.model.counting import model_stats


def test_tinyllama_recipe_matches_paper(gin_clean):
    config = config_lib.parse(["experiments/tinyllama_1_1b.gin"])
    opt, tc = config.optimizer, config.train
    assert model_stats(config.model).total_params == 1_100_048_384
    assert tc.batch_size * tc.seq_len == 1024 * 2048  # ~2M tokens per batch
    assert (opt.learning_rate, opt.learning_rate * opt.min_lr_ratio) == (4e-4, 4e-4 * 0.1)
    assert (opt.warmup_steps, opt.weight_decay, opt.b2, opt.grad_clip) == (2000, 0.1, 0.95, 1.0)
    assert abs(tc.num_steps * tc.batch_size * tc.seq_len - 3e12) < 0.01e12  # 3T tokens


def test_tinyllama_recipe_mixes_its_two_sources_7_to_3(gin_clean):
    config = config_lib.parse(["experiments/tinyllama_1_1b.gin"])
    assert config.data.mixture == (("slimpajama", 0.7, ""), ("starcoder", 0.3, ""))
    with pytest.raises(DataError, match=r"\['slimpajama', 'starcoder'\] name no prepared dir"):
        pipeline.prepare_data(config.data, config.train.seq_len)
    bound = config_lib.parse(
        ["experiments/tinyllama_1_1b.gin"],
        ["SLIMPAJAMA_PREPARED = '/data/sp'", "STARCODER_PREPARED = '/data/sc'"],
    )
    assert bound.data.mixture == (("slimpajama", 0.7, "/data/sp"), ("starcoder", 0.3, "/data/sc"))


def test_pangu_1b_ladder_uses_released_learning_rate(gin_clean):
    opt = config_lib.parse(["recipes/pangu_ladder/1b/common.gin"]).optimizer
    # The release's configs/LLM1B.py: lr 1e-4, cosine to eta_min 1e-5, 3% warmup.
    assert (opt.learning_rate, opt.warmup_steps) == (1e-4, 0.03)
    assert abs(opt.learning_rate * opt.min_lr_ratio - 1e-5) < 1e-12
