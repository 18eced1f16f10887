"""Recipe gins carry their sources' training settings."""

from tinylm_jax.config import gin as config_lib
from tinylm_jax.model.counting import model_stats


def test_tinyllama_recipe_matches_paper(gin_clean):
    config = config_lib.parse(["experiments/tinyllama_1_1b.gin"])
    opt, tc = config.optimizer, config.train
    assert model_stats(config.model).total_params == 1_100_048_384
    assert tc.batch_size * tc.seq_len == 1024 * 2048  # ~2M tokens per batch
    assert (opt.learning_rate, opt.learning_rate * opt.min_lr_ratio) == (4e-4, 4e-4 * 0.1)
    assert (opt.warmup_steps, opt.weight_decay, opt.b2, opt.grad_clip) == (2000, 0.1, 0.95, 1.0)
    assert abs(tc.num_steps * tc.batch_size * tc.seq_len - 3e12) < 0.01e12  # 3T tokens


def test_pangu_1b_ladder_uses_released_learning_rate(gin_clean):
    opt = config_lib.parse(["recipes/pangu_ladder/1b/common.gin"]).optimizer
    # The release's configs/LLM1B.py: lr 1e-4, cosine to eta_min 1e-5, 3% warmup.
    assert (opt.learning_rate, opt.warmup_steps) == (1e-4, 0.03)
    assert abs(opt.learning_rate * opt.min_lr_ratio - 1e-5) < 1e-12
