"""Weighted mixtures of prepared datasets (e.g. TinyLlama's 7:3 SlimPajama/StarCoder mix,
arXiv:2401.02385 §2.1) as one random-access source, so Grain's sampler, sharding and
checkpointed iterator state apply to it unchanged.

The mixture's index space is cut into blocks of `BLOCK` entries. Every block holds each
source's share of the block (`BLOCK * weight`, rounded by largest remainder), in an order
permuted by a seeded generator keyed by the block index; a source's k-th entry overall is
its record `k mod len(source)`, so a small source is repeated (upsampled) and a large one
is read in part per epoch. Entry j is a pure function of (j, weights, seed): nothing is
held in memory per record, and resuming at any sampler position gives the same records.

A record's stable id names its source: `source_index * SOURCE_STRIDE + record id`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinylm_jax.errors import DataError

BLOCK = 1024
SOURCE_STRIDE = 1 << 40  # a source may hold up to ~10^12 records


def source_of(ids: np.ndarray) -> np.ndarray:
    """The source index of each stable id of a mixture record."""
    return np.asarray(ids) // SOURCE_STRIDE


def source_tokens(ids_B: np.ndarray, weights_BL: np.ndarray, num_sources: int) -> np.ndarray:
    """[num_sources] target tokens (weight > 0) of a batch's rows, by the source their
    ids name; padding rows (id < 0) count for none."""
    ids_B = np.asarray(ids_B)
    real = ids_B >= 0
    tokens_B = np.asarray(weights_BL)[real].sum(axis=1)
    counts = np.bincount(source_of(ids_B[real]), weights=tokens_B, minlength=num_sources)
    return np.rint(counts).astype(np.int64)


def block_quotas(weights: Sequence[float]) -> np.ndarray:
    """Entries per block of each source: `BLOCK * weight / sum`, largest remainder first."""
    w = np.asarray(weights, np.float64)
    exact = BLOCK * w / w.sum()
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: BLOCK - quotas.sum()]] += 1
    return quotas


class MixtureSource:
    """Records of several sources in proportion to their weights (see the module doc)."""

    def __init__(
        self, sources: Sequence[Any], weights: Sequence[float], names: Sequence[str], seed: int
    ):
        check_weights(names, weights)
        if any(len(s) == 0 for s in sources):
            raise DataError(f"every mixture source needs records; sizes {list(map(len, sources))}")
        self.sources, self.names, self.seed = list(sources), list(names), seed
        self.quotas = block_quotas(weights)
        self._len = sum(len(s) for s in self.sources)

    def __len__(self) -> int:
        return self._len

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one cache per source object is the point)
    def _block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """(source of each entry, the entry's rank among its source's entries in the block)."""
        labels = np.repeat(np.arange(len(self.quotas)), self.quotas)
        labels = np.random.default_rng([self.seed, block]).permutation(labels)
        ranks = np.empty(BLOCK, np.int64)
        for s, q in enumerate(self.quotas):
            ranks[labels == s] = np.arange(q)
        return labels, ranks

    def locate(self, j: int) -> tuple[int, int]:
        """(source index, record id in that source) of mixture entry `j`."""
        if not 0 <= j < self._len:
            raise IndexError(f"mixture entry {j} out of range [0, {self._len})")
        block, offset = divmod(j, BLOCK)
        labels, ranks = self._block(block)
        s = int(labels[offset])
        k = block * int(self.quotas[s]) + int(ranks[offset])
        return s, k % len(self.sources[s])

    def __getitem__(self, j: int) -> dict[str, Any]:
        s, r = self.locate(int(j))
        record = dict(self.sources[s][r])
        record["id"] = np.int64(s * SOURCE_STRIDE + r)
        return record

    def __repr__(self) -> str:
        spec = ",".join(
            f"{n}:{q}:{len(s)}"
            for n, q, s in zip(self.names, self.quotas, self.sources, strict=True)
        )
        digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
        return f"MixtureSource({spec}, seed={self.seed}, sha={digest})"


class ConcatSource:
    """The records of several sources one after another, ids naming their source."""

    def __init__(self, sources: Sequence[Any]):
        self.sources = list(sources)
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        r = i - int(self._starts[s])
        record = dict(self.sources[s][r])
        record["id"] = np.int64(s * SOURCE_STRIDE + r)
        return record


def check_weights(names: Sequence[str], weights: Sequence[float]) -> None:
    if not names:
        raise DataError("DataConfig.mixture names no sources.")
    if len(set(names)) != len(names):
        raise DataError(f"DataConfig.mixture source names must differ; got {list(names)}.")
    bad = [f"{n}={w}" for n, w in zip(names, weights, strict=True) if not w > 0]
    if bad:
        raise DataError(
            f"DataConfig.mixture weights must be > 0; got {', '.join(bad)}. Drop a source "
            "instead of giving it weight 0."
        )
