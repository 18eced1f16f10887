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
