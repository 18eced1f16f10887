"""Tokenize documents, pack them into fixed-length records, and store the records.

A packed record holds `seq_len + 1` tokens (inputs = tokens[:-1], targets =
tokens[1:]) made by concatenating `[BOS] doc [EOS]` for every document in
corpus order and cutting the stream every `seq_len + 1` tokens. Per token it
carries
  * `segment_ids`: 1, 2, 3, ... for each document piece within the record,
    0 for padding;
  * `positions`: offset within that piece, so 0 at each document start and
    also at the start of a record that continues a document (positions are
    always < seq_len + 1).
Only the final record of a split is padded (pad_id, segment 0, position 0).
Token accounting: records * (seq_len + 1) == tokens + padding_tokens, where
tokens = sum(len(doc) + 2).

On disk a record is the raw bytes of an int32 array [3, seq_len + 1] (tokens,
segment_ids, positions) in an ArrayRecord file; record i has the stable id i.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import pathlib
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from array_record.python import array_record_module
from etils import epath

from tinylm_jax.data import cache_lock
from tinylm_jax.data.progress import Progress
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ENCODE_CHUNK = 512  # Documents per native multi-threaded encode call.


class Packer:
    """Streams token ids of documents into [3, record_len] int32 records."""

    def __init__(self, record_len: int, pad_id: int):
        self.record_len = record_len
        self.pad_id = pad_id
        self._rec = np.zeros((3, record_len), np.int32)
        self._fill = 0
        self._segments = 0

    def add(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Appends one document's tokens (BOS/EOS included); returns full records."""
        done = []
        offset = 0
        while offset < len(tokens):
            n = min(self.record_len - self._fill, len(tokens) - offset)
            self._segments += 1
            sl = slice(self._fill, self._fill + n)
            self._rec[0, sl] = tokens[offset : offset + n]
            self._rec[1, sl] = self._segments
            self._rec[2, sl] = np.arange(n, dtype=np.int32)
            self._fill += n
            offset += n
            if self._fill == self.record_len:
                done.append(self._rec)
                self._rec = np.zeros((3, self.record_len), np.int32)
                self._fill, self._segments = 0, 0
        return done

    def finish(self) -> tuple[np.ndarray | None, int]:
        """The padded final record (or None) and its number of padding tokens."""
        if self._fill == 0:
            return None, 0
        rec, pad = self._rec, self.record_len - self._fill
        rec[0, self._fill :] = self.pad_id  # Segment and position stay 0.
        self._rec = np.zeros((3, self.record_len), np.int32)
        self._fill, self._segments = 0, 0
        return rec, pad


def tokenize_documents(
    texts: Iterable[tuple[str | None, str | None]],
    tokenizer: Tokenizer,
    num_threads: int | None,
    skipped: collections.Counter,
    log_every: int = 10_000,
    name: str = "",
) -> Iterator[np.ndarray]:
    """Yields `[BOS] ids [EOS]` per usable document, in order; counts skips.

    Encoding runs in SentencePiece's C++ thread pool over chunks of documents:
    all cores, deterministic order, and no pickling of text to worker processes.
    """
    bos, eos = np.int32(tokenizer.bos_id), np.int32(tokenizer.eos_id)
    docs = 0
    start = time.monotonic()
    batch: list[str] = []

    def flush(batch: list[str]) -> Iterator[np.ndarray]:
        for ids in tokenizer.encode_batch(batch, num_threads):
            out = np.empty(len(ids) + 2, np.int32)
            out[0], out[-1] = bos, eos
            out[1:-1] = ids
            yield out

    for text, reason in texts:
        if text is None:
            skipped[reason] += 1
            continue
        batch.append(text)
        if len(batch) == ENCODE_CHUNK:
            yield from flush(batch)
            batch = []
        docs += 1
        if docs % log_every == 0:
            log.info(
                "Tokenized %d %s documents (%.0f docs/s).",
                docs,
                name,
                docs / max(time.monotonic() - start, 1e-9),
            )
    if batch:
        yield from flush(batch)


def write_packed_split(
    texts: Iterable[tuple[str | None, str | None]],
    tokenizer: Tokenizer,
    seq_len: int,
    path: pathlib.Path,
    num_threads: int | None = None,
    name: str = "",
) -> dict[str, Any]:
    """Tokenizes, packs and writes one split to `path`; returns its stats."""
    packer = Packer(seq_len + 1, tokenizer.pad_id)
    skipped: collections.Counter = collections.Counter()
    stats: dict[str, Any] = {"documents": 0, "tokens": 0, "padding_tokens": 0, "records": 0}
    writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
    documents = tokenize_documents(texts, tokenizer, num_threads, skipped, name=name)
    try:
        with Progress(f"tokenizing and packing {name}", unit="documents") as progress:
            for doc in documents:
                progress.advance()
                stats["documents"] += 1
                stats["tokens"] += len(doc)
                for rec in packer.add(doc):
                    writer.write(rec.tobytes())
                    stats["records"] += 1
        last, pad = packer.finish()
        if last is not None:
            writer.write(last.tobytes())
            stats["records"] += 1
            stats["padding_tokens"] = pad
    finally:
        writer.close()
    stats["skipped"] = dict(skipped)
    for reason, count in skipped.items():
        log.warning("Skipped %d %s documents: %s.", count, name, reason)
    return stats


class PackedSource:
    """Random-access packed records (a Grain RandomAccessDataSource).

    `source[i]` is a dict: `tokens`, `segment_ids`, `positions` (int32
    [seq_len + 1]) and `id` (int64 scalar, == i).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        seq_len: int,
        num_records: int,
        rebuild: str = "rebuild it",
    ):
        """`path`: one ArrayRecord file, or the shards of a split in record-id order;
        `num_records`: how many its manifest lists; `rebuild`: how a user rebuilds these files,
        for the message when one is missing, truncated or corrupted (a DataError, at once or
        at the record that fails to read: never a silent skip)."""
        paths = [os.fspath(path)] if isinstance(path, str | os.PathLike) else list(path)
        self.path = ",".join(str(p) for p in paths)
        self.seq_len = seq_len
        self._len = num_records
        self._paths, self._rebuild = [str(p) for p in paths], rebuild
        # ArrayRecord cannot open a file without records; an empty split needs none.
        self._records = self._open() if num_records else None

    def _open(self) -> grain.sources.ArrayRecordDataSource:
        missing = [p for p in self._paths if not epath.Path(p).exists()]
        if missing:
            raise DataError(
                f"missing {len(missing)} shard(s) of packed records listed in their manifest "
                f"(first: {missing[0]}); {self._rebuild}"
            )
        try:
            records = grain.sources.ArrayRecordDataSource(self._paths)
        except RuntimeError as error:  # a truncated file: its footer does not read
            raise self._damaged("cannot be opened", error) from error
        if len(records) != self._len:
            raise DataError(
                f"{self.path} holds {len(records)} records, its manifest lists {self._len}; "
                f"{self._rebuild}"
            )
        return records

    def _damaged(self, what: str, error: BaseException, index: int | None = None) -> DataError:
        """The DataError naming the file that fails (found by opening each alone)."""
        culprit, first = self.path, 0
        for shard in self._paths:
            try:
                count = len(grain.sources.ArrayRecordDataSource([shard]))
            except RuntimeError:
                culprit = shard
                break
            if index is not None and first <= index < first + count:
                culprit = shard
                break
            first += count
        record = "" if index is None else f"record {index} of "
        cause = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return DataError(f"{record}{culprit} {what}: it is corrupted ({cause}); {self._rebuild}")

    def __len__(self) -> int:
        return self._len

    def _decode(self, raw: bytes, i: int) -> dict[str, np.ndarray]:
        try:
            arr = np.frombuffer(raw, np.int32).reshape(3, self.seq_len + 1)
        except ValueError as error:  # a record of another size: not this format
            raise self._damaged("has a record of the wrong size", error, i) from error
        return {"tokens": arr[0], "segment_ids": arr[1], "positions": arr[2], "id": np.int64(i)}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        if not 0 <= i < self._len:
            raise IndexError(f"record {i} out of range [0, {self._len})")
        assert self._records is not None  # `i` is in range, so `__init__` opened the records
        try:
            raw = self._records[i]
        except RuntimeError as error:  # Riegeli's checksums caught damaged bytes
            raise self._damaged("does not read", error, i) from error
        return self._decode(raw, i)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        indices = [int(i) for i in indices]
        try:
            raws = self.raw_records(indices)
        except RuntimeError:  # read them one by one to name the record that fails
            return [self[i] for i in indices]
        return [self._decode(r, i) for r, i in zip(raws, indices, strict=True)]

    def raw_records(self, indices: Sequence[int]) -> list[bytes]:
        """The stored bytes of records `indices` (an int32 [3, seq_len + 1] array each)."""
        if not len(indices):
            return []
        if self._records is None:  # an empty split: no index is in range
            raise IndexError(f"record {int(indices[0])} out of range [0, 0)")
        return self._records.__getitems__([int(i) for i in indices])

    def __repr__(self) -> str:
        return f"PackedSource({self.path!r}, seq_len={self.seq_len}, records={self._len})"


def build_packed(
    directory: pathlib.Path,
    splits: Mapping[str, Iterable[tuple[str | None, str | None]]],
    tokenizer: Tokenizer,
    seq_len: int,
    num_threads: int | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Writes all splits into `directory` atomically (tmp dir + rename); returns manifest.

    One process builds under the entry's lock; concurrent ones wait and use its build.
    """
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        return check_format(json.loads(manifest_path.read_text()), manifest_path)
    with cache_lock.exclusive(directory, "packed records"):
        if not manifest_path.exists():  # Else another process packed it while this one waited.
            _build_packed(directory, splits, tokenizer, seq_len, num_threads, extra)
    return check_format(json.loads(manifest_path.read_text()), manifest_path)


def _build_packed(
    directory: pathlib.Path,
    splits: Mapping[str, Iterable[tuple[str | None, str | None]]],
    tokenizer: Tokenizer,
    seq_len: int,
    num_threads: int | None,
    extra: dict[str, Any],
) -> None:
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "seq_len": seq_len,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "splits": {},
        **extra,
    }
    try:
        for split, texts in splits.items():
            start = time.monotonic()
            stats = write_packed_split(
                texts, tokenizer, seq_len, tmp / f"{split}.array_record", num_threads, name=split
            )
            stats["seconds"] = round(time.monotonic() - start, 3)
            manifest["splits"][split] = stats
            log.info("Packed %s: %s", split, stats)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(directory, ignore_errors=True)  # a partial dir of a foreign writer
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_format(manifest: dict[str, Any], path: pathlib.Path) -> dict[str, Any]:
    """The manifest of a packed build this code can read; anything else is a DataError."""
    found = manifest.get("format_version")
    if found != FORMAT_VERSION:
        raise DataError(
            f"{path} is packed-data format {found}, this tinylm reads format {FORMAT_VERSION}; "
            f"delete {path.parent} to rebuild it"
        )
    return manifest


def open_packed(directory: pathlib.Path, manifest: dict[str, Any]) -> dict[str, PackedSource]:
    rebuild = f"delete {directory} and rerun: the run packs it again from the raw corpus"
    return {
        split: PackedSource(
            directory / f"{split}.array_record", manifest["seq_len"], stats["records"], rebuild
        )
        for split, stats in manifest["splits"].items()
    }
