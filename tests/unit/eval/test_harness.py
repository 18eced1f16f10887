"""The harness's request types on the run's steps: log-likelihoods with `is_greedy`, stop
strings and generation kwargs."""

import functools

import jax
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.eval import harness


@pytest.fixture(scope="module")
def run_and_params():
    config = ModelConfig(
        vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
        max_seq_len=32, init_std=0.5,
    )  # fmt: skip
    run = build_run(RunConfig(model=config, train=TrainConfig(batch_size=8, seq_len=16)))
    with run_context(run):
        params = init_state(run.init_fn, 0, run.shardings).params
    return run, params


def _logp(run, params, sequence: list[int]) -> np.ndarray:
    """Log-probabilities [32, V] after each position, right-padded to one compiled shape."""
    tokens = np.zeros((1, 32), np.int32)
    tokens[0, : len(sequence)] = sequence
    logits, _ = _apply(run.model, jax.device_get(params), tokens)
    return np.asarray(jax.nn.log_softmax(logits[0], axis=-1))


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, tokens):
    return model.apply({"params": params}, tokens)


@pytest.mark.slow  # compiles the scoring steps on 8 devices: 10-35 s on the shared 2 cores
def test_loglikelihoods_and_greedy_match_a_direct_forward_pass(run_and_params):
    run, params = run_and_params
    rng = np.random.default_rng(0)
    requests = [
        ([1] + rng.integers(2, 64, c).tolist(), rng.integers(2, 64, x).tolist())
        for c, x in [(3, 2), (10, 5), (0, 1), (20, 8), (5, 3), (2, 2), (7, 1), (1, 4), (9, 9)]
    ]
    # Two greedy requests: each continuation is the argmax chain after its context.
    for context in ([1, 5, 6], [1, 9]):
        continuation: list[int] = []
        for _ in range(4):
            sequence = context + continuation
            continuation.append(int(np.argmax(_logp(run, params, sequence)[len(sequence) - 1])))
        requests.append((context, continuation))

    lls, greedy = harness.loglikelihoods_and_greedy(run, params, requests)
    for i, (context, continuation) in enumerate(requests):
        sequence = context + continuation
        logp = _logp(run, params, sequence[:-1])
        scored = range(len(context) - 1, len(sequence) - 1)
        assert lls[i] == pytest.approx(sum(logp[p, sequence[p + 1]] for p in scored), abs=1e-4)
        assert greedy[i] == all(np.argmax(logp[p]) == sequence[p + 1] for p in scored)
    assert greedy[-2:].all() and not greedy[:-2].all()


def test_cut_at_stops_takes_the_earliest_stop():
    assert harness.cut_at_stops("abc\n\ndef.", ["\n\n", "."]) == "abc"
    assert harness.cut_at_stops("abc.d\n\n", ["\n\n", "."]) == "abc"
    assert harness.cut_at_stops("abc", ["x", ""]) == "abc"


def test_sampling_for_the_harness_gen_kwargs():
    config, stops = harness.sampling_for({"until": "\n", "max_gen_toks": 5}, 100)
    assert (config.max_new_tokens, config.temperature, stops) == (5, 0.0, ["\n"])
    config, stops = harness.sampling_for(
        {"until": ["a", "b"], "do_sample": True, "temperature": 0.7, "top_k": 3}, 9
    )
    assert (config.max_new_tokens, config.temperature, config.top_k) == (9, 0.7, 3)
    assert stops == ["a", "b"]
    config, _ = harness.sampling_for({"do_sample": True, "temperature": 0.0}, 9)
    assert config.temperature == 0.0  # the harness's greedy spelling
