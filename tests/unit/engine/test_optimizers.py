"""`OptimizerConfig.name`: each optax optimizer steps as optax's own (with clipping, the decay
mask and the schedule), keeps its state sharded like the params, and resumes bit-exactly from
an Orbax checkpoint."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.optimizer import OPTIMIZERS, OptimizerConfig
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.optimizer import MUON_AXES, make_optimizer
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import make_init_fn
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.transformer import Transformer

LR, WD, CLIP = 1e-2, 0.1, 0.5


def tiny_params(scan: bool) -> dict:
    config = config_lib.parse(["models/tiny_test.gin"], [f"ModelConfig.scan_layers = {scan}"]).model
    return nn.unbox(Transformer(config).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))[
        "params"
    ]


def names(path) -> list[str]:
    return [str(getattr(k, "key", k)) for k in path]


def reference(name: str, params) -> optax.GradientTransformation:
    """optax's own optimizer, built here from the config's numbers (not through our code)."""
    mask = jax.tree_util.tree_map_with_path(
        lambda p, _: not any(n.endswith("norm") for n in names(p)), params
    )
    adamw = optax.adamw(LR, b1=0.9, b2=0.95, eps=1e-8, weight_decay=WD, mask=mask)
    if name == "lion":
        base = optax.lion(LR, b1=0.9, b2=0.95, weight_decay=WD, mask=mask)
    elif name == "adafactor":
        # optax adds weight_decay_rate * param after the learning rate: AdamW's lr x wd.
        base = optax.adafactor(LR, weight_decay_rate=LR * WD, weight_decay_mask=mask)
    elif name == "muon":
        labels = jax.tree_util.tree_map_with_path(
            lambda p, _: "muon" if names(p)[-1] in MUON_AXES else "adam", params
        )
        muon = optax.contrib.muon(
            LR,
            weight_decay=WD,
            weight_decay_mask=lambda p: jax.tree.map(lambda _: True, p),
            muon_weight_dimension_numbers=lambda p: jax.tree_util.tree_map_with_path(
                lambda q, _: optax.contrib.MuonDimensionNumbers(*MUON_AXES[names(q)[-1]]), p
            ),
            consistent_rms=0.2,
        )
        base = optax.partition({"muon": muon, "adam": adamw}, labels)
    else:
        base = adamw
    return optax.chain(optax.clip_by_global_norm(CLIP), base)


# Scanned layers put a `layers` batch axis in front of every matrix: Muon must treat it so.
# (Its compile, Newton-Schulz vmapped over the layers, takes ~20 s on the 2-core CPU: slow.)
@pytest.mark.parametrize(
    "name, scan",
    [(name, False) for name in OPTIMIZERS] + [pytest.param("muon", True, marks=pytest.mark.slow)],
)
def test_two_steps_equal_optax_own(name, scan):
    params = tiny_params(scan)
    config = OptimizerConfig(
        name=name, learning_rate=LR, schedule="constant", warmup_steps=0, weight_decay=WD,
        grad_clip=CLIP,
    )  # fmt: skip
    ours, _ = make_optimizer(config, 10)
    theirs = reference(name, params)
    grads = [
        jax.tree.map(lambda x, s=seed: jax.random.normal(jax.random.key(s), x.shape), params)
        for seed in (1, 2)
    ]

    def two_steps(tx):
        p, state = params, tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p

    outs = [jax.jit(lambda tx=tx: two_steps(tx))() for tx in (ours, theirs)]
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    # The step moved every parameter (a transformation that dropped some would not).
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), outs[0], params)
    assert all(jax.tree.leaves(moved)), moved


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_is_lr_times_wd_and_the_mask_holds_norms(name):
    """Under zero gradients only decoupled decay moves the weights: by lr x wd for every
    optimizer (as AdamW's weight_decay means), and not at all for the norms."""
    params = tiny_params(scan=False)
    config = OptimizerConfig(
        name=name, learning_rate=LR, schedule="constant", warmup_steps=0, weight_decay=WD
    )
    tx, _ = make_optimizer(config, 10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(lambda: tx.update(zeros, tx.init(params), params))()
    for path, update in jax.tree_util.tree_leaves_with_path(updates):
        param = params
        for key in path:
            param = param[key.key]
        norm = any(n.endswith("norm") for n in names(path))
        expected = jnp.zeros_like(param) if norm else -LR * WD * param
        np.testing.assert_allclose(update, expected, rtol=1e-5, atol=1e-12, err_msg=str(path))


def test_unknown_optimizer_is_named():
    with pytest.raises(ConfigError, match="OptimizerConfig.name: 'sgd' is not one of"):
        OptimizerConfig(name="sgd")


def synthetic_batch(seed: int, batch: int = 4, length: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 512, (batch, length + 1))
    return {
        "inputs": jnp.asarray(tokens[:, :-1]),
        "targets": jnp.asarray(tokens[:, 1:]),
        "positions": jnp.asarray(np.tile(np.arange(length), (batch, 1))),
        "segment_ids": jnp.ones((batch, length), jnp.int32),
        "weights": jnp.ones((batch, length), jnp.float32),
    }


@pytest.mark.slow  # 15-35 s each on the 2-core CPU: four compiles of a train step
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_a_checkpoint_is_bit_exact(name, gin_clean, tmp_path):
    config = config_lib.parse(
        ["models/tiny_test.gin"],
        [
            f"OptimizerConfig.name = '{name}'",
            "TrainConfig.batch_size = 4",
            "TrainConfig.seq_len = 16",
            "TrainConfig.num_steps = 4",
            "MeshConfig.num_devices = 2",
            "MeshConfig.fsdp = 2",
            "CheckpointConfig.async_save = False",
        ],
    )
    run = build_run(config)
    batches = [synthetic_batch(seed) for seed in range(4)]
    with run_context(run):

        def steps(state, todo):
            for batch in todo:
                state, _ = run.train_step(state, batch)
            return state

        init = jax.jit(lambda r: nn.unbox(run.init_fn(r)), out_shardings=run.shardings)
        straight = steps(init(jax.random.key(0)), batches)
        manager = ckpt.make_manager(tmp_path, config.checkpoint)
        ckpt.save(manager, steps(init(jax.random.key(0)), batches[:2]), None, {}, force=True)
        manager.wait_until_finished()
        restored, _, _ = ckpt.restore_latest(manager, run.abstract, run.shardings, None)
        manager.close()
        resumed = steps(restored, batches[2:])
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    # The optimizer state keeps the params' sharding where it has their shape.
    sharded = [s for s in jax.tree.leaves(run.shardings.opt_state) if not s.is_fully_replicated]
    assert sharded, name


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_takes_the_boxes_of_param_shaped_leaves_only(name, gin_clean):
    model = Transformer(config_lib.parse(["models/tiny_test.gin"]).model)
    tx, _ = make_optimizer(OptimizerConfig(name=name), 10)
    state = jax.eval_shape(make_init_fn(model, tx, 8), jax.random.key(0))
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    boxes = [x for x in jax.tree.leaves(state.opt_state, is_leaf=is_box) if is_box(x)]
    # Adafactor's factored rows and columns have other shapes: they must not take the boxes.
    assert boxes and all(len(b.names) == b.value.ndim for b in boxes)


def test_muon_without_optax_contrib_muon_names_the_upgrade(monkeypatch):
    monkeypatch.delattr(optax.contrib, "muon")
    with pytest.raises(ConfigError, match="needs optax.contrib.muon.*pip install -U optax"):
        make_optimizer(OptimizerConfig(name="muon"), 10)
