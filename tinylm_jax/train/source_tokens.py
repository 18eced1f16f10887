"""Tokens drawn from each source of a weighted mixture, cumulative over the run: every
metrics record carries `tokens/<name>` (the target tokens trained on, padding excluded).

Counted on the host from each batch the loop takes (its stable ids name the source), kept
as the checkpoint part `source_tokens`, so a resumed run goes on from the saved counts and
logs what an uninterrupted run logs. With `TrainConfig.data_sharding='process'` each process
counts its own rows and the counts are summed over processes when read.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from tinylm_jax.data import mixture
from tinylm_jax.train.hooks import StepInfo

BATCH_INFO_KEY = "source_tokens"


class SourceTokens:
    """A hook (adds the step's batch), a checkpoint part and a source of metrics tags."""

    def __init__(self, names: Sequence[str], per_process_batches: bool):
        self.names = list(names)
        self._sum_processes = per_process_batches and jax.process_count() > 1
        self._restored = np.zeros(len(self.names), np.int64)  # all processes', at the restore
        self._since = np.zeros(len(self.names), np.int64)  # this process's rows since

    def describe_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[S] target tokens of a host batch per source (run ahead, by the prefetcher)."""
        return {
            BATCH_INFO_KEY: mixture.source_tokens(batch["ids"], batch["weights"], len(self.names))
        }

    def __call__(self, info: StepInfo) -> StepInfo:
        self._since += info.batch_info[BATCH_INFO_KEY]
        return info

    def totals(self) -> np.ndarray:
        """[S] tokens drawn so far by the whole run (a collective when processes sum)."""
        since = sum_over_processes(self._since) if self._sum_processes else self._since
        return self._restored + since

    def tags(self) -> dict[str, int]:
        return {f"tokens/{n}": int(t) for n, t in zip(self.names, self.totals(), strict=True)}

    def save(self) -> tuple[dict, None]:
        return {"tokens": dict(zip(self.names, map(int, self.totals()), strict=True))}, None

    def restore(self, metadata: dict | None, arrays: dict | None) -> None:
        saved = (metadata or {}).get("tokens", {})
        self._restored = np.array([saved.get(n, 0) for n in self.names], np.int64)
        self._since = np.zeros(len(self.names), np.int64)


def sum_over_processes(counts: np.ndarray) -> np.ndarray:
    """[S] int64 counts summed over processes, exactly: JAX gathers 32-bit integers (x64 is
    off), so each count travels as two 30-bit halves."""
    from jax.experimental import multihost_utils

    halves = np.stack([counts >> 30, counts & (2**30 - 1)]).astype(np.int32)
    gathered = np.asarray(multihost_utils.process_allgather(halves)).astype(np.int64)  # [P, 2, S]
    return (gathered[:, 0] << 30).sum(axis=0) + gathered[:, 1].sum(axis=0)
