"""Generation: EOS ends a completion; greedy and sampled decoding are reproducible."""

import jax
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.generate import generate
from tinylm_jax.model.transformer import Transformer

EOS = 2
CONFIG = ModelConfig(vocab_size=16, d_model=8, n_layers=1, n_heads=2, ffn_dim=16, max_seq_len=32)


def planted_params(next_token: int):
    """Zero weights, except a head that always prefers `next_token` by a wide margin."""
    model = Transformer(CONFIG)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 4), np.int32)))
    params = jax.tree_util.tree_map(
        lambda a: np.zeros(a.value.shape if hasattr(a, "value") else a.shape, np.float32),
        shapes["params"],
        is_leaf=lambda x: hasattr(x, "value"),
    )
    params["token_embed"][:] = 1.0
    params["final_norm"]["scale"][:] = 1.0
    params["lm_head"][:, next_token] = 10.0
    return model, params


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_eos_ends_generation(temperature):
    model, params = planted_params(EOS)
    out = generate(model, params, [[1, 5, 6], [1]], SamplingConfig(8, temperature), eos_id=EOS)
    assert out == [[], []]


def test_completions_run_to_max_new_tokens_without_eos_and_are_seeded():
    model, params = planted_params(7)
    config = SamplingConfig(max_new_tokens=5, temperature=0.0)
    assert generate(model, params, [[1, 3]], config, eos_id=EOS) == [[7] * 5]
    sampled = SamplingConfig(max_new_tokens=6)  # the defaults: temperature 0.8, top-p 0.95
    first = generate(model, params, [[1, 3]], sampled, eos_id=EOS)
    assert first == generate(model, params, [[1, 3]], sampled, eos_id=EOS)


def test_a_too_long_prompt_is_a_config_error():
    model, params = planted_params(7)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generate(model, params, [[1] * 30], SamplingConfig(max_new_tokens=8), eos_id=EOS)
