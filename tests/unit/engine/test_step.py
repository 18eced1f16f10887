"""The train step's objective: STLM's reconstruction loss is the byte head's nats of each
input token's own bytes; the step sums it into the loss and its gradient and reports it on its
own; microbatches change none of it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.support.byte_models import BASE, BYTES, random_token_bytes
from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.engine.step import objective_losses
from tinylm_jax.model.byte_level import BYTE_PAD, ByteDecoder, ByteEmbedder, byte_losses
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.train.bench import abstract_step_inputs, synthetic_batch

ONE_DEVICE = MeshConfig(data=1, num_devices=1)
# One encoder block and a blockless decoder: enough for the objective, quick to compile.
STLM = BASE.replace(
    input_embedding="byte_pooled",
    output_head="bytes",
    byte_variant="stlm",
    **{**BYTES, "byte_encoder_layers": 1, "byte_decoder_layers": 0},
)


def independent_reconstruction(model, cfg: ModelConfig, params: dict, batch: dict):
    """Per-token [B, L] nats of each input token's real bytes, decoded from the embedder's
    output by the byte decoder's parameters."""
    inputs_BLT = jnp.asarray(model.token_bytes.table_VT)[batch["inputs"]]
    embedded = ByteEmbedder(cfg).apply(
        {"params": params["byte_embedder"]}, inputs_BLT, inputs_BLT != BYTE_PAD
    )
    recon_logits = ByteDecoder(cfg).apply({"params": params["byte_decoder"]}, embedded)
    return byte_losses(recon_logits, inputs_BLT, "stlm")


def independent_objective(model, cfg: ModelConfig, params: dict, batch: dict):
    """(weighted mean of next-token + reconstruction nats, of reconstruction nats alone)."""
    logits, _ = model.apply(
        {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"]
    )
    targets_BLT = jnp.asarray(model.token_bytes.table_VT)[batch["targets"]]
    main_BL = byte_losses(logits, targets_BLT, "stlm")
    recon_BL = independent_reconstruction(model, cfg, params, batch)
    weights = batch["weights"]
    main, recon = jnp.sum(main_BL * weights), jnp.sum(recon_BL * weights)
    return (main + recon) / jnp.sum(weights), recon / jnp.sum(weights)


def stlm_run(microbatches: int = 1):
    return build_run(
        RunConfig(
            model=STLM,
            train=TrainConfig(batch_size=4, seq_len=8, microbatches=microbatches),
            mesh=ONE_DEVICE,
        ),
        random_token_bytes(),
    )


def test_objective_adds_the_reconstruction_of_each_input_tokens_bytes():
    model = Transformer(STLM, random_token_bytes())

    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, STLM.vocab_size)
    batch = {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "positions": jnp.broadcast_to(jnp.arange(8), (2, 8)),
        "segment_ids": jnp.ones((2, 8), jnp.int32),
        "weights": jnp.ones((2, 8)).at[0, :3].set(0.0),
    }
    # Any parameters will do; drawing them here saves compiling the model's init.
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), batch["inputs"]))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes
    )
    both = jax.jit(
        lambda p: (
            objective_losses(model, p, batch),
            independent_reconstruction(model, STLM, p, batch),
        )
    )
    (_, weights, auxiliary), expected_recon = both(params)
    assert list(auxiliary) == ["reconstruction_loss"]
    np.testing.assert_allclose(auxiliary["reconstruction_loss"], expected_recon, rtol=1e-6)
    np.testing.assert_array_equal(weights, batch["weights"])


@pytest.mark.parametrize("model, extra", [(BASE, set()), (STLM, {"reconstruction_loss"})])
def test_step_metrics_name_the_auxiliary_losses(model, extra):
    """Traced only (no compilation): the default model's metrics are today's four."""
    tokens = None if model is BASE else random_token_bytes()
    run = build_run(
        RunConfig(model=model, train=TrainConfig(batch_size=4, seq_len=8), mesh=ONE_DEVICE), tokens
    )
    _, metrics = jax.eval_shape(run.train_step, *abstract_step_inputs(run))
    assert set(metrics) == {"loss", "grad_norm", "learning_rate", "tokens"} | extra


def stlm_step(microbatches: int) -> tuple[dict, dict]:
    """(the step's metrics, the independent loss, reconstruction loss and grad norm at the
    step's initial parameters)."""
    run = stlm_run(microbatches)
    with run_context(run):
        state = init_state(run.init_fn, 0, run.shardings)
        batch = synthetic_batch(run)
        batch["weights"] = batch["weights"].at[0, :3].set(0.0)
        objective = jax.jit(
            jax.value_and_grad(
                lambda p: independent_objective(run.model, STLM, p, batch), has_aux=True
            )
        )
        (total, recon), grads = objective(state.params)
        expected = {
            "loss": total,
            "reconstruction_loss": recon,
            "grad_norm": optax.tree.norm(grads),
        }
        _, metrics = run.train_step(state, batch)
    return jax.device_get(metrics), jax.device_get(expected)


@pytest.fixture(scope="module")
def one_microbatch() -> tuple[dict, dict]:
    return stlm_step(microbatches=1)


@pytest.mark.slow
def test_reconstruction_loss_is_summed_into_the_loss_and_its_gradient(one_microbatch):
    metrics, expected = one_microbatch
    for name in ("loss", "reconstruction_loss", "grad_norm"):
        np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-5, err_msg=name)
    assert 0 < metrics["reconstruction_loss"] < metrics["loss"]


@pytest.mark.slow
def test_microbatches_accumulate_the_reconstruction_loss(one_microbatch):
    one, _ = one_microbatch
    two, _ = stlm_step(microbatches=2)
    for name in ("loss", "reconstruction_loss", "grad_norm"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, err_msg=name)
