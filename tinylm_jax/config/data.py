"""Gin-configurable settings of the data pipeline."""

from __future__ import annotations

import dataclasses
import os
import pathlib

DATA_DIR_ENV = "TINYLM_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/tinylm_jax"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What corpus to read, how to tokenize it and where to cache the results.

    Attributes:
      dataset: 'python_stdlib' (the installed standard library's sources; the
        default demo corpus), 'text_files' (local files given by `paths`) or the
        name of a prepared TFDS catalog dataset such as 'lm1b' or
        'tiny_shakespeare' (must have been prepared with file_format='array_record').
      paths: Files or globs for 'text_files': `.jsonl` (one JSON object per line,
        text under `text_key`), `.parquet` (column `text_key`); any other file is
        one document.
      text_key: Name of the text field (jsonl/parquet/TFDS feature).
      tokenizer: Path of a SentencePiece `.model`, a Hugging Face `tokenizer.json`
        (its special tokens declared in the files beside it) or a directory holding
        either; None trains a SentencePiece model on the training split (cached in
        the data dir).
      vocab_size: Vocabulary size when training a tokenizer.
      validation_fraction: Fraction of documents (chosen by a hash of each
        document's path/index) held out for validation.
      data_dir: Cache root; None means $TINYLM_DATA_DIR or ~/.cache/tinylm_jax.
      tfds_data_dir: Where prepared TFDS catalog datasets live (None: TFDS default).
      tokenizer_model_type: 'unigram' or 'bpe'.
      tokenizer_character_coverage: Share of the corpus's characters the trained
        tokenizer covers with pieces of their own (SentencePiece's
        character_coverage); rarer ones fall back to bytes (or unk).
      tokenizer_split_digits: Split numbers into single digits.
      tokenizer_byte_fallback: 256 byte pieces for text outside the vocabulary
        (lossless round trips); without them such text becomes unk.
      tokenizer_input_sentence_size: Chunks of ~1,000 characters sampled to train on.
      max_documents: Optional cap on the documents read (tests, demos).
      num_workers: Threads for tokenization (None: all cores).
      loader_workers: Grain worker processes for the train loader (0: in-process).
      prepared: A prepared-dataset directory (local or shared; gs:// untested) written
        by `tinylm data prepare`; every host then reads its share of the shards and
        none tokenizes or packs. The corpus fields above are then only used to prepare it.
      mixture: Several prepared datasets mixed by weight, as ((name, weight, prepared dir),
        ...), e.g. (('prose', 0.7, 'gs://b/prose'), ('code', 0.3, 'gs://b/code')); they
        must share tokenizer and seq_len. Record ids name their source (`data/mixture.py`).
        Replaces `prepared`.
      records_per_shard: Records per ArrayRecord shard that `tinylm data prepare` writes.
      prepare_chunk_documents: Documents per unit of work of `tinylm data prepare` (what
        one Beam worker tokenizes at a time).
    """

    dataset: str = "python_stdlib"
    paths: tuple[str, ...] = ()
    text_key: str = "text"
    tokenizer: str | None = None
    vocab_size: int = 8192
    validation_fraction: float = 0.01
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    tokenizer_model_type: str = "unigram"
    tokenizer_character_coverage: float = 0.9995
    tokenizer_split_digits: bool = True
    tokenizer_byte_fallback: bool = True
    tokenizer_input_sentence_size: int = 100_000
    max_documents: int | None = None
    num_workers: int | None = None
    loader_workers: int = 0
    prepared: str | None = None
    mixture: tuple[tuple[str, float, str], ...] = ()
    records_per_shard: int = 16384
    prepare_chunk_documents: int = 2048


def resolve_data_dir(config: DataConfig) -> pathlib.Path:
    """The cache root; read at call time so the env var can be set late (tests)."""
    raw = config.data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return pathlib.Path(raw).expanduser().resolve()
