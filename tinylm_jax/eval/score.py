"""Per-record losses of a whole split under frozen params: the scoring pass of multi-round
training and of `tinylm score` (data selection, curricula).

Every process reads a strided share of the records and the run's once-jitted `score_step`
runs on the whole mesh; its replicated output gives every process every record's loss.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tinylm_jax.data import loader as loader_lib
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.files import write_atomically
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.dispatch import DispatchWindow

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Scores:
    """`nll_N`: summed negative log-likelihood (nats) of each record's targets, `tokens_N`: its
    target tokens, both indexed by the record's position in the source (its id, in a packed
    split); `seconds`: wall time of the pass."""

    nll_N: np.ndarray
    tokens_N: np.ndarray
    seconds: float

    @property
    def loss_N(self) -> np.ndarray:
        """Mean loss per target token of each record (nats)."""
        return self.nll_N / np.maximum(self.tokens_N, 1)

    @property
    def tokens_per_second(self) -> float:
        return float(np.sum(self.tokens_N)) / max(self.seconds, 1e-9)


def _ids_and_tokens(ids_B: jax.Array, weights_BL: jax.Array) -> tuple[jax.Array, jax.Array]:
    return ids_B, jnp.sum(weights_BL, axis=1)


def score_records(
    run: Run,
    params,
    source: loader_lib.RecordSource,
    batch_size: int,
    after_batch: Callable[[int], None] | None = None,
) -> Scores:
    """Scores every record of `source` (a packed split or a mixture, by position) once,
    `batch_size` (global) rows at a time; `after_batch(i)` runs after batch i (1-based) is
    dispatched (tests inject faults)."""
    replicated = rules_lib.replicated(run.mesh)
    gather = jax.jit(_ids_and_tokens, out_shardings=(replicated, replicated))
    batches = loader_lib.iter_eval_batches(
        loader_lib.PositionIdSource(source),
        batch_size // jax.process_count(),
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    log.info("scoring %d records, %d per batch", len(source), batch_size)
    start = time.perf_counter()
    outputs = []
    # A few batches in flight, never the whole split: see `tinylm_jax.parallel.dispatch`.
    window = DispatchWindow()
    with run_context(run):
        for index, host_batch in enumerate(batches, start=1):
            batch = run.eval_batch(host_batch)
            outputs.append((run.score_step(params, batch), *gather(batch["ids"], batch["weights"])))
            window.push(outputs[-1])
            if after_batch:
                after_batch(index)
        # One transfer at the end, so the host never waits on a copy batch by batch.
        outputs = jax.device_get(outputs)
    nll_N = np.zeros(len(source), np.float64)
    tokens_N = np.zeros(len(source), np.int64)
    for loglik_B, ids_B, tokens_B in outputs:
        real = ids_B >= 0  # rows past the end of a process's share are padding (id -1)
        nll_N[ids_B[real]] = -np.asarray(loglik_B, np.float64)[real]
        tokens_N[ids_B[real]] = np.asarray(tokens_B)[real].astype(np.int64)
    return Scores(nll_N, tokens_N, time.perf_counter() - start)


def write_scores(path: epath.PathLike, scores: Scores) -> None:
    """One JSON object per record, in id order: `{"id", "loss", "tokens"}` (`loss` in nats per
    target token)."""
    lines = (
        json.dumps({"id": i, "loss": float(loss), "tokens": int(tokens)})
        for i, (loss, tokens) in enumerate(zip(scores.loss_N, scores.tokens_N, strict=True))
    )
    write_atomically(path, "".join(line + "\n" for line in lines))
