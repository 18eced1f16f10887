"""Schedules, the weight-decay mask and gradient accumulation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.optimizer import OptimizerConfig
from tinylm_jax.engine.optimizer import decay_mask, make_schedule
from tinylm_jax.engine.state import make_init_fn
from tinylm_jax.engine.step import train_step
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.transformer import Transformer


def lrs(config: OptimizerConfig, steps: int) -> np.ndarray:
    schedule = make_schedule(config, steps)
    return np.array([float(schedule(i)) for i in range(steps)])


def test_cosine_warms_up_then_decays_to_floor():
    values = lrs(OptimizerConfig(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1), 100)
    assert values[0] == pytest.approx(0.1)
    assert values[9] == pytest.approx(1.0)
    assert np.all(np.diff(values[:10]) > 0) and np.all(np.diff(values[10:]) <= 1e-7)
    assert values[-1] == pytest.approx(0.1, abs=1e-3)


def test_fractional_warmup_is_a_share_of_the_run():
    values = lrs(OptimizerConfig(learning_rate=1.0, warmup_steps=0.1), 200)
    assert int(np.argmax(values)) == 19


def test_wsd_holds_then_decays_linearly():
    values = lrs(
        OptimizerConfig(
            learning_rate=1.0, schedule="wsd", warmup_steps=5, decay_fraction=0.2, min_lr_ratio=0.0
        ),
        100,
    )
    assert np.allclose(values[5:80], 1.0)
    assert values[-1] < 0.06 and np.all(np.diff(values[80:]) < 0)


def test_constant_schedule():
    assert np.allclose(
        lrs(OptimizerConfig(learning_rate=0.5, schedule="constant", warmup_steps=0), 20), 0.5
    )


def test_bad_schedule_is_named():
    with pytest.raises(ConfigError, match="schedule"):
        OptimizerConfig(schedule="exp")


def test_decay_mask_excludes_norms_and_optionally_embeddings():
    params = {
        "token_embed": 1,
        "final_norm": {"scale": 1},
        "layers_0": {"attn_norm": {"scale": 1}, "mlp": {"up_proj": 1}},
    }
    mask = decay_mask(OptimizerConfig(), params)
    assert mask["token_embed"] and mask["layers_0"]["mlp"]["up_proj"]
    assert not mask["final_norm"]["scale"] and not mask["layers_0"]["attn_norm"]["scale"]
    assert not decay_mask(OptimizerConfig(decay_embeddings=False), params)["token_embed"]


def test_microbatch_accumulation_equals_full_batch():
    cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, ffn_dim=32)
    model = Transformer(cfg)
    # Plain SGD makes the parameter change equal the gradient (Adam's first step is ~sign(g)).
    tx = optax.sgd(1.0)
    schedule = optax.constant_schedule(1.0)
    state = jax.jit(lambda r: nn.unbox(make_init_fn(model, tx, 8)(r)))(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "inputs": rng.integers(0, 50, (8, 8)),
        "targets": rng.integers(0, 50, (8, 8)),
        "positions": np.tile(np.arange(8), (8, 1)),
        "segment_ids": np.ones((8, 8), int),
        "weights": (rng.random((8, 8)) > 0.2).astype(np.float32),
    }
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    outs = [
        train_step(state, batch, model=model, tx=tx, schedule=schedule, microbatches=m)
        for m in (1, 4)
    ]
    np.testing.assert_allclose(outs[0][1]["loss"], outs[1][1]["loss"], rtol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(outs[0][0].params),
        jax.tree_util.tree_leaves(outs[1][0].params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_restarted_schedule_runs_the_schedule_afresh_in_every_round():
    from tinylm_jax.config.optimizer import OptimizerConfig as Config
    from tinylm_jax.engine.optimizer import make_schedule, restarted_schedule

    config = Config(learning_rate=1.0, warmup_steps=2, min_lr_ratio=0.1)
    restarted = restarted_schedule(config, (10, 6))
    first, second = make_schedule(config, 10), make_schedule(config, 6)
    assert [float(restarted(i)) for i in range(10)] == [float(first(i)) for i in range(10)]
    assert [float(restarted(10 + i)) for i in range(6)] == [float(second(i)) for i in range(6)]
