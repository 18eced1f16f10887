"""Decoding with a delta of another vocabulary: identical tokenizers through that path decode
as the shared-vocabulary path, the cached decoding (re-running the delta from its first changed
token) equals an uncached reference, and a zero delta with 'add' changes nothing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.support.cmc import cross_tokenizers
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.data.cross_vocab import (
    CrossVocab,
    extend_delta_ids,
    first_change,
    prompt_delta_ids,
)
from tinylm_jax.data.token_map import build_map
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.engine.combined import combined_logits
from tinylm_jax.eval.generate import generate
from tinylm_jax.eval.generate_cross import generate_across
from tinylm_jax.eval.generate_delta import generate_with_delta
from tinylm_jax.model.transformer import Transformer

PROMPTS = ["def wrap(text, width=70, **kwargs):\n", "    return", "import re"]
STEPS = 16
WIDTH = 96  # the reference pads every prefix to one length: one compilation per model


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    sentencepiece, bpe = cross_tokenizers(tmp_path_factory.mktemp("tokenizers"))
    return load_tokenizer(sentencepiece), load_tokenizer(bpe)


def model(vocab_size: int, d_model: int, seed: int, init_std: float, zero_head: bool = False):
    config = ModelConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=2 if d_model > 16 else 1,
        n_heads=4 if d_model > 16 else 2,
        n_kv_heads=2,
        ffn_dim=2 * d_model,
        max_seq_len=64,
        init_std=init_std,
    )
    transformer = Transformer(config)
    params = transformer.init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]
    params = jax.device_get(nn.unbox(params))
    if zero_head:
        params["lm_head"] = np.zeros_like(params["lm_head"])
    return transformer, params


def encoded(tokenizer, prompts):
    return [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]


@pytest.mark.slow
def test_identical_tokenizers_through_the_cross_path_decode_as_the_shared_path(tokenizers):
    user, _ = tokenizers
    models = (model(user.vocab_size, 32, 0, 0.3), model(user.vocab_size, 16, 1, 1.0))
    cross = CrossVocab(user, user, build_map(user, user))
    greedy = SamplingConfig(STEPS, 0.0)
    shared = generate_with_delta(
        tuple(m for m, _ in models),
        tuple(p for _, p in models),
        encoded(user, PROMPTS),
        greedy,
        user.eos_id,
        "base",
        1.5,
        pad_id=user.pad_id,
    )
    across = generate_across(
        tuple(m for m, _ in models),
        tuple(p for _, p in models),
        PROMPTS,
        cross,
        greedy,
        "base",
        1.5,
    )
    assert across == shared


def reference(models, params, cross, normalization, alpha):
    """Greedy completions that recompute both models over every whole prefix (no cache), the
    delta's prefix kept by the same rule (`extend_delta_ids`); and how many steps changed
    delta tokens already read."""
    user = cross.user
    map_V = jnp.asarray(cross.map_for(models[0].config.vocab_size))
    applies = [jax.jit(m.apply) for m in models]

    def last_logits(i, ids):
        padded = jnp.asarray([ids + [0] * (WIDTH - len(ids))])  # causal: the tail is unseen
        return applies[i]({"params": params[i]}, padded)[0][:, len(ids) - 1]

    completions, rewrites = [], 0
    for prompt in PROMPTS:
        user_ids, delta_ids, text = (
            encoded(user, [prompt])[0],
            prompt_delta_ids(cross, prompt),
            prompt.encode(),
        )
        completion = []
        for _ in range(STEPS):
            logits = combined_logits(
                last_logits(0, user_ids), last_logits(1, delta_ids), normalization, alpha, map_V
            )
            token = int(jnp.argmax(logits[0]))
            if token == user.eos_id:
                break
            completion.append(token)
            user_ids.append(token)
            text += cross.piece(token)[1]
            extended = extend_delta_ids(cross, delta_ids, token, text)
            rewrites += first_change(delta_ids, extended) < len(delta_ids)
            delta_ids = extended
        completions.append(completion)
    return completions, rewrites


@pytest.mark.slow
def test_cached_decoding_across_vocabularies_equals_the_uncached_reference(tokenizers):
    user, delta = tokenizers
    (user_model, user_params), (delta_model, delta_params) = (
        model(user.vocab_size, 32, 0, 0.3),
        model(delta.vocab_size, 16, 1, 1.0),
    )
    models, params = (user_model, delta_model), (user_params, delta_params)
    cross = CrossVocab(user, delta, build_map(user, delta))
    cached = generate_across(
        models, params, PROMPTS, cross, SamplingConfig(STEPS, 0.0), "base", 1.0
    )
    expected, rewrites = reference(models, params, cross, "base", 1.0)
    assert cached == expected
    # Re-encodings rewrote delta tokens already read (the cache was cut back), and the delta
    # changed greedy choices: the equality is not vacuous.
    assert rewrites > 0
    alone = generate(
        user_model, user_params, encoded(user, PROMPTS), SamplingConfig(STEPS, 0.0), user.eos_id
    )
    assert alone != cached


@pytest.mark.slow
def test_a_zero_delta_with_add_leaves_decoding_unchanged_across_vocabularies(tokenizers):
    user, delta = tokenizers
    user_model, user_params = model(user.vocab_size, 32, 0, 0.3)
    delta_model, zero = model(delta.vocab_size, 16, 1, 1.0, zero_head=True)
    cross = CrossVocab(user, delta, build_map(user, delta))
    for temperature in (0.0, 0.9):
        sampling = SamplingConfig(STEPS, temperature, seed=3)
        alone = generate(user_model, user_params, encoded(user, PROMPTS), sampling, user.eos_id)
        with_zero = generate_across(
            (user_model, delta_model), (user_params, zero), PROMPTS, cross, sampling, "add", 1.0
        )
        assert with_zero == alone
