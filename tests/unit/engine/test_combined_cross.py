"""Eval and score steps with a delta of another vocabulary (text-offset alignment): identical
tokenizers through that path give the shared-vocabulary results exactly, a zero delta with
'add' leaves the model's results unchanged across vocabularies, and 8 devices give 1's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.support.cmc import cross_tokenizers, packed_batch, stdlib_texts
from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.data.cross_vocab import CrossVocab
from tinylm_jax.data.token_map import build_map
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.engine.combined import with_delta
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.model.transformer import Transformer

SEQ_LEN = 32


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    sentencepiece, bpe = cross_tokenizers(tmp_path_factory.mktemp("tokenizers"))
    return load_tokenizer(sentencepiece), load_tokenizer(bpe)


def user_run(vocab_size: int, devices: int = 1):
    model = ModelConfig(
        vocab_size=vocab_size,
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=2,
        ffn_dim=32,
        max_seq_len=4 * SEQ_LEN,
        init_std=0.3,
    )
    config = RunConfig(
        model=model,
        train=TrainConfig(batch_size=8, seq_len=SEQ_LEN),
        mesh=MeshConfig(num_devices=devices),
    )
    run = build_run(config)
    params = nn.unbox(run.model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))["params"]
    return run, params


def delta_model(vocab_size: int, zero_head: bool = False):
    delta = Transformer(
        ModelConfig(
            vocab_size=vocab_size,
            d_model=8,
            n_layers=1,
            n_heads=2,
            n_kv_heads=2,
            ffn_dim=16,
            max_seq_len=4 * SEQ_LEN,
            init_std=1.0,
        )
    )
    params = nn.unbox(delta.init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32)))["params"]
    if zero_head:
        params["lm_head"] = jnp.zeros_like(params["lm_head"])
    return delta, params


def run_steps(run, params, host_batch):
    """(eval sums, per-row scores) of one batch under `run`'s steps."""
    table = jnp.ones(run.config.model.vocab_size)
    with run_context(run):
        batch = run.eval_batch(host_batch)
        return jax.device_get(run.eval_step(params, batch, table)), np.asarray(
            run.score_step(params, batch)
        )


@pytest.mark.slow
def test_identical_tokenizers_through_the_cross_path_equal_the_shared_path(tokenizers):
    user, _ = tokenizers
    run, params = user_run(user.vocab_size)
    delta, delta_params = delta_model(user.vocab_size)
    batch = packed_batch(user, stdlib_texts(), rows=8, seq_len=SEQ_LEN)
    shared = with_delta(run, delta, "base", 1.5)
    cross = with_delta(run, delta, "base", 1.5, CrossVocab(user, user, build_map(user, user)))
    sums, scores = run_steps(shared, (params, delta_params), batch)
    cross_sums, cross_scores = run_steps(cross, (params, delta_params), batch)
    assert cross_sums == sums
    np.testing.assert_array_equal(cross_scores, scores)
    # The delta changes the model's loss, so the equality is not vacuous.
    alone, _ = run_steps(run, params, batch)
    assert abs(alone["loss_sum"] - sums["loss_sum"]) > 1.0


@pytest.mark.slow
def test_a_zero_delta_with_add_leaves_eval_and_score_unchanged_across_vocabularies(tokenizers):
    user, delta_tokenizer = tokenizers
    run, params = user_run(user.vocab_size)
    delta, zero = delta_model(delta_tokenizer.vocab_size, zero_head=True)
    batch = packed_batch(user, stdlib_texts(), rows=8, seq_len=SEQ_LEN)
    cross = CrossVocab(user, delta_tokenizer, build_map(user, delta_tokenizer))
    sums, scores = run_steps(with_delta(run, delta, "add", 2.0, cross), (params, zero), batch)
    alone, alone_scores = run_steps(run, params, batch)
    np.testing.assert_allclose(sums["loss_sum"], alone["loss_sum"], rtol=1e-6)
    np.testing.assert_allclose(scores, alone_scores, rtol=1e-6)
    # The delta read its own, longer tokenization of the rows.
    prepared = with_delta(run, delta, "add", 2.0, cross).prepare_batch(batch)
    assert prepared["delta_inputs"].shape[1] > SEQ_LEN


@pytest.mark.slow
def test_eight_devices_equal_one_across_vocabularies(tokenizers):
    user, delta_tokenizer = tokenizers
    delta, delta_params = delta_model(delta_tokenizer.vocab_size)
    batch = packed_batch(user, stdlib_texts(), rows=8, seq_len=SEQ_LEN)
    cross = CrossVocab(user, delta_tokenizer, build_map(user, delta_tokenizer))
    results = []
    for devices in (1, 8):
        run, params = user_run(user.vocab_size, devices)
        combined = with_delta(run, delta, "base", 1.0, cross)
        results.append(run_steps(combined, (params, delta_params), batch))
    (sums_1, scores_1), (sums_8, scores_8) = results
    np.testing.assert_allclose(sums_8["loss_sum"], sums_1["loss_sum"], rtol=1e-5)
    np.testing.assert_allclose(scores_8, scores_1, rtol=1e-5)
