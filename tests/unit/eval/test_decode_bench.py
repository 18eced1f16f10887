"""The decode benchmark: what it times is sampling's own path, and the bytes it counts."""

import jax
import numpy as np
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval import decode_bench as db
from tinylm_jax.eval.generate import generate
from tinylm_jax.model.transformer import Transformer

CONFIG = ModelConfig(
    vocab_size=64, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=32
)


@pytest.fixture(scope="module")
def model_params():
    model = Transformer(CONFIG)
    params = model.init(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
    return model, params


def test_bytes_per_step_counts_weights_once_and_the_whole_cache():
    init = Transformer(CONFIG).init
    params = jax.eval_shape(init, jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
    weights, kv = db.bytes_per_step(CONFIG, params, batch=3, length=10)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    embedding_rows_not_read = (64 - 3) * 16  # untied: only the looked-up rows
    assert weights == 4 * (n_params - embedding_rows_not_read)
    assert kv == 2 * 2 * 3 * 10 * 1 * 8 * 4  # k and v, layers, batch, slots, kv heads, dim, fp32


@pytest.mark.parametrize("scan", [False, True])
def test_a_decode_step_does_not_copy_the_kv_cache(scan):
    """At a cache-dominated shape a step's XLA traffic stays near the floor: about 3x (the
    in-place slot write is counted as the whole buffer); re-stacking per-layer copies, as
    decoding once did, came to 7.8x."""
    config = ModelConfig(
        vocab_size=64,
        d_model=64,
        n_layers=2,
        n_heads=2,
        ffn_dim=64,
        max_seq_len=1024,
        scan_layers=scan,
    )
    model = Transformer(config)
    params = model.init(jax.random.key(0), np.zeros((1, 4), np.int32))["params"]
    weights, kv = db.bytes_per_step(config, params, batch=4, length=1024)
    assert db.xla_bytes_per_step(model, params, batch=4, length=1024) < 4 * (weights + kv)


@pytest.mark.slow
def test_decode_bench_reports_positive_figures(model_params):
    model, params = model_params
    result = db.decode_bench(model, params, batch_size=2, prompt_len=4, new_tokens=5, repeats=1)
    record = result.as_dict()
    for key in ("decode_tokens_per_second", "prefill_seconds", "memory_bandwidth_bytes_per_second"):
        assert record[key] > 0, key
    assert record["decode_step_seconds"] == pytest.approx(
        record["batch_size"] / record["decode_tokens_per_second"]
    )
    assert record["compute_dtype"] == "float32" and record["platform"] == "cpu"
    assert "decode" in db.decode_summary(result)


@pytest.mark.slow
def test_the_timed_generation_is_samples_greedy_path(model_params):
    """eos_id -1 runs all new tokens; the ids equal `generate`'s greedy ones (no EOS hit)."""
    model, params = model_params
    prompt = [[3, 5, 7, 9]]
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0)
    ids = db.generate_ids(
        model, params, np.asarray(prompt, np.int32), np.zeros(1, np.int32), 0, greedy, -1
    )
    assert np.asarray(ids).shape == (1, 6)
    assert np.asarray(ids)[0].tolist() == generate(model, params, prompt, greedy, eos_id=63)[0][:6]


def test_bad_shapes_are_refused():
    model, params = Transformer(CONFIG), {}  # refused before the params are touched
    with pytest.raises(ConfigError, match="max_seq_len=32"):
        db.decode_bench(model, params, prompt_len=30, new_tokens=8)
    with pytest.raises(ConfigError, match="--new_tokens >= 2"):
        db.decode_bench(model, params, new_tokens=1)
