"""Grain loaders over packed records: shuffled training batches and fixed eval batches.

Batches are dicts of numpy arrays (B = per-process batch size, L = seq_len):
  inputs, targets, segment_ids, positions: int32 [B, L]
  weights: float32 [B, L], 1.0 where the target is a real token (incl. a BOS
    that follows an EOS), 0.0 on padding
  ids: int64 [B], the stable record ids (-1 for eval padding rows)

Train iterator state (`it.get_state()` / `it.set_state(state)`) is Grain's
DataLoaderIterator state: UTF-8 JSON bytes holding the last index each worker
consumed plus the worker count and reprs of sampler and source. It restores
exactly only with the same records, seed, shards, batch size and worker count.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from typing import Any, Protocol

import grain
import numpy as np

from tinylm_jax.errors import DataError

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


class RecordSource(Protocol):
    """Random-access records (`packing.PackedSource`, a mixture, a subset of either)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


def record_to_example(record: dict[str, np.ndarray]) -> Batch:
    """Shifts a packed record of L + 1 tokens into inputs/targets of length L."""
    tokens, segments = record["tokens"], record["segment_ids"]
    return {
        "inputs": tokens[:-1],
        "targets": tokens[1:],
        "segment_ids": segments[:-1],
        "positions": record["positions"][:-1],
        "weights": (segments[1:] != 0).astype(np.float32),
        "ids": np.int64(record["id"]),
    }


class _ToExample(grain.transforms.Map):
    def map(self, element: dict[str, np.ndarray]) -> Batch:
        return record_to_example(element)


class SubsetSource:
    """The records of `source` whose ids are `ids` (any order, repeats allowed)."""

    def __init__(self, source: RecordSource, ids: np.ndarray):
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise DataError(
                f"sequence_ids must be a 1-D integer array; got {ids.dtype}{ids.shape}."
            )
        if len(ids) and (ids.min() < 0 or ids.max() >= len(source)):
            raise DataError(
                f"sequence_ids must lie in [0, {len(source)}) (the packed train split); got "
                f"[{ids.min()}, {ids.max()}]. Were they recorded for another dataset/seq_len?"
            )
        self.source = source
        self.ids = ids.astype(np.int64)
        # Deterministic repr: Grain stores it in the iterator state.
        self._digest = hashlib.sha256(self.ids.tobytes()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Any:
        return self.source[int(self.ids[i])]

    def __repr__(self) -> str:
        return f"SubsetSource({self.source!r}, n={len(self.ids)}, sha={self._digest})"


class PositionIdSource:
    """`source` with each record's `id` replaced by its index in `source`.

    Scores and selections are indexed by position: for a packed split the two agree (record
    i has id i); a mixture's ids also name their source, and its positions are its order.
    """

    def __init__(self, source: RecordSource):
        self.source = source
        self.seq_len = getattr(source, "seq_len", None)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.source[int(i)], "id": np.int64(i)}


def make_train_loader(
    source: RecordSource,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    sequence_ids: np.ndarray | None = None,
    num_epochs: int | None = None,
    worker_count: int = 0,
) -> grain.DataLoader:
    """A Grain DataLoader: disjoint strided shards, a seeded shuffle per epoch, batches.

    Shards split the (optionally subset) records into `shard_count` disjoint
    parts that differ in size by at most one record; nothing is dropped except
    the final partial batch when `num_epochs` is finite (logged).
    """
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive; got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise DataError(f"shard_index must be in [0, {shard_count}); got {shard_index}.")
    ids = np.arange(len(source)) if sequence_ids is None else sequence_ids
    # Shard here rather than with Grain's ShardOptions, which (grain 0.2.18) drops a record
    # per epoch when the record count is not divisible by the shard count.
    source = SubsetSource(source, np.asarray(ids)[shard_index::shard_count])
    if len(source) == 0:
        raise DataError(
            "The training split has no packed records: add documents or lower "
            "DataConfig.validation_fraction."
        )
    if num_epochs is not None:
        dropped = len(source) * num_epochs % batch_size
        if dropped:
            log.info(
                "Shard %d drops the final partial batch (%d records) after %d epochs.",
                shard_index,
                dropped,
                num_epochs,
            )
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shuffle=True,
        num_epochs=num_epochs,
        seed=seed,
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[_ToExample(), grain.transforms.Batch(batch_size, drop_remainder=True)],
        worker_count=worker_count,
    )


def iter_eval_batches(
    source: RecordSource,
    batch_size: int,
    num_batches: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
) -> Iterator[Batch]:
    """Every record once, in order, strided over shards; never drops records.

    All shards yield the same number of batches (collectives across processes
    stay in step); rows past the end are padding with weights 0 and id -1.
    """
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive; got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise DataError(f"shard_index must be in [0, {shard_count}); got {shard_index}.")
    total = math.ceil(math.ceil(len(source) / shard_count) / batch_size)
    if num_batches is not None:
        total = min(total, num_batches)
    if total == 0:
        log.warning("Evaluation source is empty; the eval iterator yields nothing.")
    # Validation above happens at call time; batches are produced lazily below.
    return _eval_batches(source, batch_size, total, shard_index, shard_count)


def _eval_batches(
    source: RecordSource, batch_size: int, total: int, shard_index: int, shard_count: int
) -> Iterator[Batch]:
    indices = np.arange(shard_index, len(source), shard_count)
    seq_len = getattr(source, "seq_len", None) or (len(source[0]["tokens"]) - 1)
    for b in range(total):
        rows = [
            record_to_example(source[int(i)])
            for i in indices[b * batch_size : (b + 1) * batch_size]
        ]
        rows += [_padding_row(seq_len)] * (batch_size - len(rows))
        yield {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _padding_row(seq_len: int) -> Batch:
    zeros = np.zeros(seq_len, np.int32)
    return {
        "inputs": zeros,
        "targets": zeros,
        "segment_ids": zeros,
        "positions": zeros,
        "weights": np.zeros(seq_len, np.float32),
        "ids": np.array(-1, np.int64),
    }
