"""Held-out loss, perplexity and bits per byte of a run's params on the validation split."""

from __future__ import annotations

import math

import jax
import numpy as np

from tinylm_jax.data import pipeline
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.errors import ConfigError
from tinylm_jax.parallel import rules as rules_lib


def evaluate(
    run: Run,
    params,
    data: pipeline.PreparedData,
    byte_lengths_V: np.ndarray,
    num_batches: int | None,
) -> dict[str, float]:
    """Held-out metrics over `num_batches` batches of `TrainConfig.eval_batch_size` (None: the
    whole split), with the run's once-jitted eval step."""
    batch_size = run.config.train.resolved_eval_batch_size
    iterator = pipeline.make_eval_iterator(
        data,
        batch_size // jax.process_count(),
        num_batches=num_batches,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    table = jax.device_put(byte_lengths_V, rules_lib.replicated(run.mesh))
    totals = {"loss_sum": 0.0, "tokens": 0.0, "bytes": 0.0}
    with run_context(run):
        for batch in iterator:
            batch.pop("ids", None)
            sums = jax.device_get(run.eval_step(params, run.eval_batch(batch), table))
            for key in totals:
                totals[key] += float(sums[key])
    if totals["tokens"] == 0:
        raise ConfigError("the validation split is empty; raise DataConfig.validation_fraction")
    loss = totals["loss_sum"] / totals["tokens"]
    return {
        "eval_loss": loss,
        "eval_perplexity": math.exp(min(loss, 50.0)),
        "eval_bits_per_byte": totals["loss_sum"] / math.log(2) / max(totals["bytes"], 1.0),
        "eval_tokens": totals["tokens"],
    }
