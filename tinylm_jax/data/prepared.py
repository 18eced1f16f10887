"""Prepared datasets: packed records written once (by `tinylm data prepare`) and read by
every host of every run that sets `DataConfig.prepared`.

Layout of a prepared-dataset directory (any `etils.epath` path):
  manifest.json                       format, fingerprint, tokenizer, seq_len, counts, shards
  tokenizer/                          the tokenizer the records were made with
  <split>-SSSSS-of-NNNNN.array_record records of `packing.py`'s format, in id order
  _stats/<split>.json                 the pipeline's counts (copied into the manifest)

Record `i` of a split is record `i % records_per_shard` of shard `i // records_per_shard`,
and its stable id is `i`: ids follow document order and offsets in the token stream, so
they do not depend on how many workers wrote the shards, nor in which order.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

from etils import epath

from tinylm_jax.data import packing
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.errors import DataError

FORMAT = "tinylm-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.array_record"


def num_shards(records: int, records_per_shard: int) -> int:
    return max(1, math.ceil(records / records_per_shard)) if records else 0


def fingerprint(raw_fingerprint: str, tokenizer: Tokenizer, seq_len: int) -> str:
    """Changes whenever the packed records may change (inputs, tokenizer, seq_len, format)."""
    key = f"{raw_fingerprint}:{tokenizer.fingerprint}:{seq_len}:{packing.FORMAT_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = epath.Path(directory) / MANIFEST
    if not path.exists():
        raise DataError(
            f"DataConfig.prepared={directory} holds no {MANIFEST}: it is not a prepared dataset "
            "(or its preparation did not finish). Run `tinylm data prepare --out=DIR` with the "
            "run's gin files first."
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path} is {manifest.get('format')} v{manifest.get('format_version')}; this tinylm "
            f"reads {FORMAT} v{FORMAT_VERSION}. Prepare the dataset again with this version."
        )
    return manifest


def open_prepared(
    directory: str | os.PathLike[str], seq_len: int, tokenizer_path: str | None
) -> tuple[dict[str, Any], Tokenizer, dict[str, packing.PackedSource]]:
    """The manifest, tokenizer and splits of a prepared dataset, checked against the run.

    A seq_len or tokenizer that differs from the run's, or a missing, truncated or short
    shard, is a DataError (raised before any training work); a shard corrupted inside raises
    one at the record that fails to read.
    """
    root = epath.Path(directory)
    manifest = read_manifest(root)
    if manifest["seq_len"] != seq_len:
        raise DataError(
            f"DataConfig.prepared={directory} was packed with seq_len={manifest['seq_len']}, "
            f"the run has TrainConfig.seq_len={seq_len}; set TrainConfig.seq_len = "
            f"{manifest['seq_len']} or prepare the data again with the run's gin files."
        )
    tokenizer = load_tokenizer(root / TOKENIZER_DIR)
    if tokenizer_path is not None:
        wanted = load_tokenizer(tokenizer_path)
        if wanted.fingerprint != tokenizer.fingerprint:
            raise DataError(
                f"DataConfig.prepared={directory} was made with a different tokenizer than "
                f"DataConfig.tokenizer={tokenizer_path}; drop DataConfig.tokenizer (the prepared "
                "dataset carries its own) or prepare the data again with this tokenizer."
            )
    rebuild = (
        f"copy it back, or prepare DataConfig.prepared={directory} again (`tinylm data prepare "
        "--out=DIR` with the gin files it was made with)"
    )
    sources = {
        split: packing.PackedSource(
            [os.fspath(root / name) for name in stats["shards"]], seq_len, stats["records"], rebuild
        )
        for split, stats in manifest["splits"].items()
    }
    return manifest, tokenizer, sources
