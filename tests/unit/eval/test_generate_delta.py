"""Generation with a delta: a zero delta changes nothing ('add' exactly, 'base' greedily), and
the cached two-model decoding equals the uncached combined forward pass."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.engine.combined import combined_logits
from tinylm_jax.eval.generate import generate
from tinylm_jax.eval.generate_delta import generate_with_delta
from tinylm_jax.model.transformer import Transformer

USER = ModelConfig(
    vocab_size=48,
    d_model=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    ffn_dim=64,
    max_seq_len=32,
    init_std=0.3,
)
DELTA = USER.replace(d_model=16, n_layers=1, n_heads=2, ffn_dim=32)
PROMPTS = [[1, 5, 9, 3], [1, 7]]
EOS = 2


def model_and_params(config: ModelConfig, seed: int):
    model = Transformer(config)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]
    return model, jax.device_get(nn.unbox(params))


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["add", "base"])
def test_a_zero_delta_leaves_greedy_and_sampled_text_unchanged(normalization):
    user, user_params = model_and_params(USER, 0)
    delta, delta_params = model_and_params(DELTA, 1)
    delta_params["lm_head"] = np.zeros_like(delta_params["lm_head"])
    temperatures = [0.0, 0.9] if normalization == "add" else [0.0]
    for temperature in temperatures:
        sampling = SamplingConfig(10, temperature, seed=3)
        plain = generate(user, user_params, PROMPTS, sampling, eos_id=EOS)
        with_delta = generate_with_delta(
            (user, delta), (user_params, delta_params), PROMPTS, sampling, EOS, normalization, 1.0
        )
        assert with_delta == plain


@pytest.mark.slow
def test_cached_decoding_equals_the_uncached_combined_forward_pass():
    user, user_params = model_and_params(USER, 0)
    delta, delta_params = model_and_params(DELTA.replace(init_std=1.0), 1)
    sampling = SamplingConfig(8, 0.0)
    cached = generate_with_delta(
        (user, delta), (user_params, delta_params), [PROMPTS[0]], sampling, EOS, "base", 2.0
    )[0]
    # Causal models: one uncached pass over prompt + completion gives every step's logits.
    ids = jnp.asarray([PROMPTS[0] + cached])
    base, _ = jax.jit(user.apply)({"params": user_params}, ids)
    shift, _ = jax.jit(delta.apply)({"params": delta_params}, ids)
    greedy = jnp.argmax(combined_logits(base, shift, "base", 2.0)[0], axis=-1)
    P = len(PROMPTS[0])
    assert greedy[P - 1 : P - 1 + len(cached)].tolist() == cached
    # The delta is strong enough to change greedy choices, so the check is not vacuous.
    assert (jnp.argmax(base[0], axis=-1) != greedy).any()
