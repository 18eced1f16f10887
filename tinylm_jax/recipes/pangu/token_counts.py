"""How often each id of a tokenizer occurs in a corpus, counted once per (corpus, tokenizer)
and cached in the data dir."""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import pathlib
import time
from collections.abc import Iterable, Iterator

import numpy as np

from tinylm_jax.data import cache_lock
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data.packing import tokenize_documents
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.files import write_atomically

log = logging.getLogger(__name__)

_COUNT_FLUSH_TOKENS = 1 << 22  # Tokens buffered before one np.bincount.


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    """How often each id of a tokenizer occurs in a corpus (BOS/EOS not counted)."""

    counts: np.ndarray  # int64 [V]
    documents: int
    bytes: int

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())


def count_tokens(
    tokenizer: Tokenizer,
    texts: Iterable[tuple[str | None, str | None]],
    num_threads: int | None = None,
    log_every: int = 1000,
) -> TokenCounts:
    """Counts token ids over `(text, skip_reason)` items (as `corpus.iter_texts` yields).

    Encoding runs on all cores in SentencePiece's thread pool (`packing.tokenize_documents`);
    progress is logged every `log_every` documents.
    """
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    total_bytes = 0

    def measured() -> Iterator[tuple[str | None, str | None]]:
        nonlocal total_bytes
        for text, reason in texts:
            if text is not None:
                total_bytes += len(text.encode("utf-8"))
            yield text, reason

    start = time.monotonic()
    skipped: collections.Counter = collections.Counter()
    documents, buffered, buffer = 0, 0, []
    for ids in tokenize_documents(measured(), tokenizer, num_threads, skipped, log_every, "corpus"):
        buffer.append(ids[1:-1])  # Drop the BOS/EOS that packing adds.
        documents += 1
        buffered += len(ids)
        if buffered >= _COUNT_FLUSH_TOKENS:
            counts += np.bincount(np.concatenate(buffer), minlength=tokenizer.vocab_size)
            buffer, buffered = [], 0
    if buffer:
        counts += np.bincount(np.concatenate(buffer), minlength=tokenizer.vocab_size)
    seconds = time.monotonic() - start
    log.info(
        "Counted %d tokens in %d documents (%.1f MB, %.2f MB/s).",
        counts.sum(),
        documents,
        total_bytes / 1e6,
        total_bytes / 1e6 / max(seconds, 1e-9),
    )
    return TokenCounts(counts=counts, documents=documents, bytes=total_bytes)


def cached_counts(
    tokenizer: Tokenizer, raw: corpus_lib.RawCorpus, data_dir: pathlib.Path, threads: int | None
) -> TokenCounts:
    """Counts over the train split, cached per (corpus, tokenizer) in the data dir."""
    path = data_dir / "token_counts" / f"{raw.fingerprint}-{tokenizer.fingerprint[:16]}.npz"
    if not path.exists():
        with cache_lock.exclusive(path, "token counts"):
            if not path.exists():  # Else another process counted while this one waited.
                _count_into(path, tokenizer, raw, threads)
    with np.load(path) as f:
        return TokenCounts(f["counts"], int(f["documents"]), int(f["bytes"]))


def _count_into(
    path: pathlib.Path, tokenizer: Tokenizer, raw: corpus_lib.RawCorpus, threads: int | None
) -> None:
    log.info("Counting %s tokens over the train split of %s ...", tokenizer.path, raw.name)
    texts = corpus_lib.iter_texts(raw.splits["train"], raw.text_key)
    counts = count_tokens(tokenizer, texts, threads)
    arrays = io.BytesIO()
    np.savez(arrays, counts=counts.counts, documents=counts.documents, bytes=counts.bytes)
    write_atomically(path, arrays.getvalue())
