"""The train step's objective: STLM's reconstruction loss is summed into the loss and its
gradient, and reported on its own; microbatches change none of it."""

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
from tinylm_jax.model.byte_level import BYTE_PAD, ByteDecoder, ByteEmbedder, byte_losses
from tinylm_jax.train.bench import synthetic_batch

ONE_DEVICE = MeshConfig(data=1, num_devices=1)
STLM = BASE.replace(
    input_embedding="byte_pooled", output_head="bytes", byte_variant="stlm", **BYTES
)


def independent_objective(model, cfg: ModelConfig, params: dict, batch: dict):
    """(weighted mean of next-token + reconstruction nats, of reconstruction nats alone), the
    reconstruction decoded from the embedder's output by the same decoder parameters."""
    table = jnp.asarray(model.token_bytes.table_VT)
    inputs_BLT, targets_BLT = table[batch["inputs"]], table[batch["targets"]]
    embedded = ByteEmbedder(cfg).apply(
        {"params": params["byte_embedder"]}, inputs_BLT, inputs_BLT != BYTE_PAD
    )
    recon_logits = ByteDecoder(cfg).apply({"params": params["byte_decoder"]}, embedded)
    logits, _ = model.apply(
        {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"]
    )
    weights = batch["weights"]
    main = jnp.sum(byte_losses(logits, targets_BLT, "stlm") * weights)
    recon = jnp.sum(byte_losses(recon_logits, inputs_BLT, "stlm") * weights)
    return (main + recon) / jnp.sum(weights), recon / jnp.sum(weights)


def stlm_step(microbatches: int) -> tuple[dict, dict]:
    """(the step's metrics, the independent loss, reconstruction loss and grad norm at the
    step's initial parameters)."""
    run = build_run(
        RunConfig(
            model=STLM,
            train=TrainConfig(batch_size=4, seq_len=8, microbatches=microbatches),
            mesh=ONE_DEVICE,
        ),
        random_token_bytes(),
    )
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


def test_reconstruction_loss_is_summed_into_the_loss_and_its_gradient(one_microbatch):
    metrics, expected = one_microbatch
    for name in ("loss", "reconstruction_loss", "grad_norm"):
        np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-5, err_msg=name)
    assert 0 < metrics["reconstruction_loss"] < metrics["loss"]


def test_microbatches_accumulate_the_reconstruction_loss(one_microbatch):
    one, _ = one_microbatch
    two, _ = stlm_step(microbatches=2)
    for name in ("loss", "reconstruction_loss", "grad_norm"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, err_msg=name)


def test_models_without_reconstruction_report_no_auxiliary_loss():
    run = build_run(
        RunConfig(model=BASE, train=TrainConfig(batch_size=4, seq_len=8), mesh=ONE_DEVICE)
    )
    with run_context(run):
        state = init_state(run.init_fn, 0, run.shardings)
        _, metrics = run.train_step(state, synthetic_batch(run))
    assert set(metrics) == {"loss", "grad_norm", "learning_rate", "tokens"}
