"""Entry point for the trainer: corpus -> tokenizer -> packed records -> iterators.

Cache layout under the data dir ($TINYLM_DATA_DIR or ~/.cache/tinylm_jax):
  tfds/<builder>/<config-hash>/<version>/   raw documents (TFDS, ArrayRecord)
  tokenizers/<raw-fp>-<type>-<vocab>.model  tokenizers trained on a corpus
  (a given tokenizer, SentencePiece or tokenizer.json, is read in place)
  packed/<raw-fp>-<tokenizer-fp>-L<seq_len>-v<format>/{train,validation}.array_record
                                            + manifest.json (stats)
Every level is keyed by a fingerprint of its inputs, so a changed corpus,
tokenizer or seq_len is rebuilt and an unchanged one is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
from typing import Any

import grain
import numpy as np

from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.data import cache_lock, packing
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data import loader as loader_lib
from tinylm_jax.data import mixture as mixture_lib
from tinylm_jax.data import prepared as prepared_lib
from tinylm_jax.data.tokenizer import (
    HFTokenizer,
    Tokenizer,
    check_vocab,
    load_tokenizer,
    train_tokenizer,
)
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

log = logging.getLogger(__name__)

__all__ = [
    "PreparedData",
    "prepare_data",
    "make_train_iterator",
    "make_eval_iterator",
    "check_vocab",
    "train_tokenizer_for",
]


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Packed splits and the tokenizer that made them.

    `train` / `validation` are random-access sources (`len`, `[i]`) of packed
    records: dicts with `tokens`, `segment_ids`, `positions` (int32
    [seq_len + 1]) and `id` (the stable record id). `stats` has per-split
    documents, skipped (by reason), bytes, tokens, padding_tokens, records.
    """

    tokenizer: Tokenizer
    train: packing.PackedSource
    validation: packing.PackedSource
    seq_len: int
    stats: dict[str, Any]
    loader_workers: int = 0
    cache_dir: str = ""
    source_names: tuple[str, ...] = ()  # a mixture's sources, by index (`mixture.source_of`)


def _tokenizer(config: DataConfig, raw: corpus_lib.RawCorpus, data_dir: pathlib.Path) -> Tokenizer:
    if config.tokenizer is not None:
        return load_tokenizer(config.tokenizer)
    settings = tokenizer_training_settings(config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = data_dir / "tokenizers" / f"{raw.fingerprint}-{digest}.model"
    if path.exists():
        return load_tokenizer(path)
    with cache_lock.exclusive(path, "a tokenizer"):
        if path.exists():  # Another process trained it while this one waited.
            return load_tokenizer(path)
        log.info(
            "Training a %d-piece %s tokenizer on %s ...",
            config.vocab_size,
            config.tokenizer_model_type,
            raw.name,
        )
        texts = (t for t, _ in corpus_lib.iter_texts(raw.splits["train"], raw.text_key) if t)
        proto = train_tokenizer(texts, **settings, num_threads=config.num_workers)
        write_atomically(path, proto)  # readers that skip the lock never see half a model
    return load_tokenizer(path)


def tokenizer_training_settings(config: DataConfig) -> dict[str, Any]:
    """`train_tokenizer`'s arguments from `config` (they also key the tokenizer cache)."""
    return {
        "vocab_size": config.vocab_size,
        "model_type": config.tokenizer_model_type,
        "character_coverage": config.tokenizer_character_coverage,
        "split_digits": config.tokenizer_split_digits,
        "byte_fallback": config.tokenizer_byte_fallback,
        "input_sentence_size": config.tokenizer_input_sentence_size,
    }


def train_tokenizer_for(config: DataConfig, out: str | os.PathLike[str] | None = None) -> str:
    """Trains (or reuses) the tokenizer `prepare_data` would use; copies it to `out` (a file,
    or a directory that receives all of the tokenizer's files).

    Returns the path of the tokenizer's main file (in `out` when given).
    """
    data_dir = resolve_data_dir(config)
    raw = corpus_lib.load_raw_corpus(config, data_dir)
    tokenizer = _tokenizer(config, raw, data_dir)
    assert tokenizer.path is not None  # `_tokenizer` reads it from a file (`load_tokenizer`)
    if out is None:
        return tokenizer.path
    out = pathlib.Path(out).expanduser()
    if out.is_dir():
        return str(out / tokenizer.save(out)[0])
    if isinstance(tokenizer, HFTokenizer):
        raise DataError(
            f"--out={out}: a tokenizer.json comes with the files that declare its special "
            "tokens; give a directory"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokenizer.path, out)
    return str(out)


def corpus_and_tokenizer(
    config: DataConfig,
) -> tuple[pathlib.Path, corpus_lib.RawCorpus, Tokenizer]:
    """The cache root, the raw corpus (built once) and the run's tokenizer (trained once)."""
    data_dir = resolve_data_dir(config)
    raw = corpus_lib.load_raw_corpus(config, data_dir)
    return data_dir, raw, _tokenizer(config, raw, data_dir)


def prepare_data(config: DataConfig, seq_len: int) -> PreparedData:
    """Builds (or reuses) the raw corpus, tokenizer and packed records."""
    if seq_len <= 0:
        raise DataError(f"seq_len must be positive; got {seq_len}.")
    if config.mixture:
        return _open_mixture(config, seq_len)
    if config.prepared is not None:
        return _open_prepared(config, seq_len)
    data_dir = resolve_data_dir(config)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"Cannot create data dir {data_dir} ({e}); set DataConfig.data_dir or "
            "$TINYLM_DATA_DIR to a writable directory."
        ) from e
    raw = corpus_lib.load_raw_corpus(config, data_dir)
    tokenizer = _tokenizer(config, raw, data_dir)
    packed_dir = (
        data_dir
        / "packed"
        / f"{raw.fingerprint}-{tokenizer.fingerprint[:16]}-L{seq_len}-v{packing.FORMAT_VERSION}"
    )
    splits = {s: corpus_lib.iter_texts(src, raw.text_key) for s, src in raw.splits.items()}
    manifest = packing.build_packed(
        packed_dir,
        splits,
        tokenizer,
        seq_len,
        config.num_workers,
        extra={"dataset": raw.name, "raw_fingerprint": raw.fingerprint, "raw_path": raw.path},
    )
    sources = packing.open_packed(packed_dir, manifest)
    stats: dict[str, Any] = {
        "dataset": raw.name,
        "raw_path": raw.path,
        "packed_path": str(packed_dir),
        "tokenizer": tokenizer.path,
        "vocab_size": tokenizer.vocab_size,
        "seq_len": seq_len,
    }
    for split, packed_stats in manifest["splits"].items():
        raw_stats = raw.stats.get(split, {})
        skipped = dict(raw_stats.get("skipped", {}))
        for reason, n in packed_stats.get("skipped", {}).items():
            skipped[reason] = skipped.get(reason, 0) + n
        stats[split] = {**packed_stats, "skipped": skipped, "bytes": raw_stats.get("bytes")}
    log.info("Prepared data: %s", stats)
    return PreparedData(
        tokenizer=tokenizer,
        train=sources["train"],
        validation=sources["validation"],
        seq_len=seq_len,
        stats=stats,
        loader_workers=config.loader_workers,
        cache_dir=str(data_dir),
    )


def _open_prepared(config: DataConfig, seq_len: int) -> PreparedData:
    """A dataset `tinylm data prepare` wrote: nothing is built, only read."""
    assert config.prepared is not None
    manifest, tokenizer, sources = prepared_lib.open_prepared(
        config.prepared, seq_len, config.tokenizer, resolve_data_dir(config)
    )
    stats: dict[str, Any] = {
        "dataset": manifest["dataset"],
        "raw_path": manifest.get("raw_path"),
        "packed_path": config.prepared,
        "tokenizer": tokenizer.path,
        "vocab_size": tokenizer.vocab_size,
        "seq_len": seq_len,
        **{
            split: {k: v for k, v in st.items() if k != "shards"}
            for split, st in manifest["splits"].items()
        },
    }
    return PreparedData(
        tokenizer=tokenizer,
        train=sources["train"],
        validation=sources["validation"],
        seq_len=seq_len,
        stats=stats,
        loader_workers=config.loader_workers,
        cache_dir=config.prepared,
    )


def _open_mixture(config: DataConfig, seq_len: int) -> PreparedData:
    """Prepared datasets mixed by weight; every check runs before any record is read."""
    if config.prepared is not None:
        raise DataError("Set DataConfig.mixture or DataConfig.prepared, not both.")
    names = [name for name, _, _ in config.mixture]
    weights = [float(weight) for _, weight, _ in config.mixture]
    mixture_lib.check_weights(names, weights)
    unset = [name for name, _, path in config.mixture if not str(path).strip()]
    if unset:
        raise DataError(
            f"DataConfig.mixture source(s) {unset} name no prepared dir. Prepare each once "
            "with `tinylm data prepare --out=DIR` (one tokenizer for all sources) and put DIR in "
            "its mixture entry; a named config that leaves the dirs to you says in its comment "
            "which gin macros to bind."
        )
    opened = [
        prepared_lib.open_prepared(path, seq_len, config.tokenizer, resolve_data_dir(config))
        for _, _, path in config.mixture
    ]
    tokenizer = opened[0][1]
    for (name, _, path), (_, other, _) in zip(config.mixture, opened, strict=True):
        if other.fingerprint != tokenizer.fingerprint:
            raise DataError(
                f"DataConfig.mixture source {name!r} ({path}) was prepared with another "
                f"tokenizer than {names[0]!r}; prepare every source with one tokenizer "
                "(DataConfig.tokenizer)."
            )
    seed = int(hashlib.sha256(repr(config.mixture).encode()).hexdigest()[:8], 16)
    train = mixture_lib.MixtureSource([o[2]["train"] for o in opened], weights, names, seed)
    validation = mixture_lib.ConcatSource([o[2]["validation"] for o in opened])
    stats: dict[str, Any] = {
        "dataset": "mixture:" + ",".join(f"{n}={w:g}" for n, w in zip(names, weights, strict=True)),
        "tokenizer": tokenizer.path,
        "vocab_size": tokenizer.vocab_size,
        "seq_len": seq_len,
        "sources": {n: o[0]["splits"] for n, o in zip(names, opened, strict=True)},
        "train": {
            "records": len(train),
            "documents": sum(o[0]["splits"]["train"]["documents"] for o in opened),
        },
        "validation": {"records": len(validation)},
    }
    return PreparedData(
        tokenizer=tokenizer,
        train=train,  # type: ignore[arg-type]
        validation=validation,  # type: ignore[arg-type]
        seq_len=seq_len,
        stats=stats,
        loader_workers=config.loader_workers,
        source_names=tuple(names),
    )


def make_train_iterator(
    data: PreparedData,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    sequence_ids: np.ndarray | None = None,
    num_epochs: int | None = None,
) -> grain.DataLoaderIterator:
    """Shuffled batches of `batch_size` (per process) rows from this process's shard.

    `sequence_ids` restricts sampling to those record ids (multi-round replay).
    The iterator has `get_state()` / `set_state()` (see `loader.py`).
    """
    loader = loader_lib.make_train_loader(
        data.train,
        batch_size,
        seed,
        shard_index,
        shard_count,
        sequence_ids,
        num_epochs,
        worker_count=data.loader_workers,
    )
    return iter(loader)


def make_eval_iterator(
    data: PreparedData,
    batch_size: int,
    num_batches: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
):
    """Validation batches in fixed order; the last is padded with weight-0 rows."""
    return loader_lib.iter_eval_batches(
        data.validation, batch_size, num_batches, shard_index, shard_count
    )
