"""Combined logits of a model and a delta (Cross-model Control): the three normalizations,
alpha, and the token-map gather."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinylm_jax.engine.combined import combined_logits, gather_delta

RNG = np.random.default_rng(0)
BASE = jnp.asarray(RNG.normal(size=(2, 3, 7)) * 3, jnp.float32)
DELTA = jnp.asarray(RNG.normal(size=(2, 3, 7)), jnp.float32)


def test_a_zero_delta_leaves_add_exact_and_base_shifted_by_a_constant_per_position():
    zero = jnp.zeros_like(BASE)
    np.testing.assert_array_equal(combined_logits(BASE, zero, "add", 1.0), BASE)
    shift = combined_logits(BASE, zero, "base", 1.0) - BASE
    np.testing.assert_allclose(
        shift, -jax.nn.logsumexp(BASE, axis=-1, keepdims=True) + 0 * BASE, rtol=1e-6
    )
    np.testing.assert_array_equal(
        jnp.argmax(combined_logits(BASE, zero, "base", 1.0), -1), jnp.argmax(BASE, -1)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_each_normalization_is_its_formula(alpha):
    log_base, log_delta = jax.nn.log_softmax(BASE), jax.nn.log_softmax(DELTA)
    np.testing.assert_allclose(combined_logits(BASE, DELTA, "add", alpha), BASE + alpha * DELTA)
    np.testing.assert_allclose(
        combined_logits(BASE, DELTA, "base", alpha), log_base + alpha * DELTA, rtol=1e-6
    )
    np.testing.assert_allclose(
        combined_logits(BASE, DELTA, "both", alpha), log_base + alpha * log_delta, rtol=1e-6
    )


def test_the_map_gathers_delta_logits_and_unmatched_tokens_keep_the_base_logit():
    delta_W = jnp.asarray([[10.0, 20.0, 30.0]])
    map_V = jnp.asarray([2, -1, 0, 0])
    np.testing.assert_array_equal(gather_delta(delta_W, map_V), [[30.0, 0.0, 10.0, 10.0]])
    base_V = jnp.asarray([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(
        combined_logits(base_V, delta_W, "add", 0.5, map_V), [[16.0, 2.0, 8.0, 9.0]]
    )
    # 'both' normalizes the delta over its own vocabulary before the gather.
    both = combined_logits(base_V, delta_W, "both", 1.0, map_V)
    expected = jax.nn.log_softmax(base_V) + gather_delta(jax.nn.log_softmax(delta_W), map_V)
    np.testing.assert_allclose(both, expected, rtol=1e-6)


def test_an_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="normalization"):
        combined_logits(BASE, DELTA, "basenormalization", 1.0)


@pytest.mark.slow
def test_with_a_zero_delta_eval_and_score_steps_equal_the_models():
    """'add' with an all-zero delta head: held-out sums and per-row scores are the model's."""
    import flax.linen as nn

    from tinylm_jax.config.mesh import MeshConfig
    from tinylm_jax.config.model import ModelConfig
    from tinylm_jax.config.run import RunConfig
    from tinylm_jax.config.train import TrainConfig
    from tinylm_jax.engine.combined import with_delta
    from tinylm_jax.engine.run import build_run, run_context
    from tinylm_jax.model.transformer import Transformer

    model = ModelConfig(
        vocab_size=32, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=32, max_seq_len=16
    )
    config = RunConfig(
        model=model, train=TrainConfig(batch_size=2, seq_len=8), mesh=MeshConfig(num_devices=1)
    )
    run = build_run(config)
    delta = Transformer(model.replace(d_model=8, ffn_dim=16))
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = nn.unbox(run.model.init(jax.random.key(0), tokens))["params"]
    zero = nn.unbox(delta.init(jax.random.key(1), tokens))["params"]
    zero["lm_head"] = jnp.zeros_like(zero["lm_head"])
    ids = RNG.integers(0, 32, (2, 9))
    batch = {
        "inputs": ids[:, :-1],
        "targets": ids[:, 1:],
        "positions": np.tile(np.arange(8), (2, 1)),
        "segment_ids": np.ones((2, 8), np.int32),
        "weights": np.ones((2, 8), np.float32),
    }
    table = jnp.ones(32)
    combined = with_delta(run, delta, "add", 1.0)
    with run_context(run):
        alone = jax.device_get(run.eval_step(params, batch, table))
        both = jax.device_get(combined.eval_step((params, zero), batch, table))
        np.testing.assert_allclose(both["loss_sum"], alone["loss_sum"], rtol=1e-6)
        np.testing.assert_allclose(
            combined.score_step((params, zero), batch), run.score_step(params, batch), rtol=1e-6
        )
