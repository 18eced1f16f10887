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

ArrayRecord's reader opens local files only, so the shards of a dataset on an object store
(gs://) are read from a local copy each host makes once (`stage_locally`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from array_record.python import array_record_module
from etils import epath

from tinylm_jax.data import cache_lock, packing
from tinylm_jax.data.corpus import RawCorpus
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.files import is_local, write_atomically

FORMAT = "tinylm-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"
STAGED_DIR = "staged"  # local copies of remote datasets, under the data cache dir
STAGED_RECORD = "staged.json"
COPY_CHUNK = 16 << 20


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


def start_output(root: epath.Path, fingerprint: str, tokenizer: Tokenizer) -> dict[str, Any] | None:
    """The manifest of a finished dataset of these inputs at `root` (reused as it is), else
    None after laying out a new one (its tokenizer written). One of other inputs is a
    DataError."""
    if (root / MANIFEST).exists():
        manifest = read_manifest(root)
        if manifest["fingerprint"] == fingerprint:
            return manifest
        raise DataError(
            f"--out={root} holds a prepared dataset of other inputs (fingerprint "
            f"{manifest['fingerprint']}, these give {fingerprint}); choose another --out."
        )
    (root / TOKENIZER_DIR).mkdir(parents=True, exist_ok=True)
    tokenizer.save(root / TOKENIZER_DIR)
    return None


def open_prepared(
    directory: str | os.PathLike[str],
    seq_len: int,
    tokenizer_path: str | None,
    cache_dir: pathlib.Path | None = None,
) -> tuple[dict[str, Any], Tokenizer, dict[str, packing.PackedSource]]:
    """The manifest, tokenizer and splits of a prepared dataset, checked against the run.

    A seq_len or tokenizer that differs from the run's, or a missing, truncated or short
    shard, is a DataError (raised before any training work); a shard corrupted inside raises
    one at the record that fails to read. The shards of a remote dataset are read from a local
    copy under `cache_dir` (see `stage_locally`).
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
    if not is_local(root):
        if cache_dir is None:
            raise ValueError(f"reading {directory} needs a local cache dir for its shards")
        # Checked here too: the local copy below would fail on a missing shard less clearly.
        missing = [str(root / name) for name in _shards(manifest) if not (root / name).exists()]
        if missing:
            raise DataError(
                f"missing {len(missing)} shard(s) of packed records listed in their manifest "
                f"(first: {missing[0]}); {rebuild}"
            )
        root = epath.Path(stage_locally(root, manifest, cache_dir))
    sources = {
        split: packing.PackedSource(
            [os.fspath(root / name) for name in stats["shards"]], seq_len, stats["records"], rebuild
        )
        for split, stats in manifest["splits"].items()
    }
    return manifest, tokenizer, sources


def _shards(manifest: dict[str, Any]) -> list[str]:
    return [name for stats in manifest["splits"].values() for name in stats["shards"]]


def stage_locally(root: epath.Path, manifest: dict[str, Any], cache_dir: pathlib.Path) -> str:
    """A local copy of the shards of the remote prepared dataset `root`; returns its dir,
    `cache_dir/staged/<fingerprint>-<manifest digest>/`.

    One process per host copies, under the entry's lock; the others wait and reuse it. A copy
    is used only while its recorded manifest equals `root`'s and every shard has the size the
    object store reported when it was copied; any other copy is made again.
    """
    text = json.dumps(manifest, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    local = cache_dir / STAGED_DIR / f"{manifest.get('fingerprint', 'unknown')}-{digest}"
    if _staged_intact(local, manifest):
        return str(local)
    with cache_lock.exclusive(local, f"a local copy of {root}"):
        if not _staged_intact(local, manifest):  # else another process copied it meanwhile
            _stage(root, manifest, local)
    return str(local)


def _staged_intact(local: pathlib.Path, manifest: dict[str, Any]) -> bool:
    record = local / STAGED_RECORD
    if not record.exists():
        return False
    staged = json.loads(record.read_text())
    if staged["manifest"] != manifest:
        return False
    return all(
        (local / name).exists() and (local / name).stat().st_size == size
        for name, size in staged["sizes"].items()
    )


def _stage(root: epath.Path, manifest: dict[str, Any], local: pathlib.Path) -> None:
    tmp = local.parent / f".{local.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        sizes = {}
        for name in _shards(manifest):
            expected = (root / name).stat().length
            with (root / name).open("rb") as src, open(tmp / name, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_CHUNK)
            sizes[name] = (tmp / name).stat().st_size
            if sizes[name] != expected:
                raise DataError(
                    f"copying {root / name} gave {sizes[name]} bytes, the store holds "
                    f"{expected}; is the prepared dataset being rewritten? Retry when it is not."
                )
        record = {"source": os.fspath(root), "manifest": manifest, "sizes": sizes}
        (tmp / STAGED_RECORD).write_text(json.dumps(record, sort_keys=True))
        shutil.rmtree(local, ignore_errors=True)  # a copy that failed its checks
        os.replace(tmp, local)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_shard(records: Iterable[bytes], out: epath.Path, name: str) -> None:
    """Writes `records` in order as the ArrayRecord shard `out/name` (local or remote):
    into a local temporary file first, since ArrayRecord writes local files only, then moved
    (locally) or streamed up (to an object store, which replaces an object atomically)."""
    target = out / name
    with tempfile.TemporaryDirectory(dir=out if is_local(out) else None) as tmp:
        path = os.path.join(tmp, name)
        writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
        try:
            for data in records:
                writer.write(data)
        finally:
            writer.close()
        if is_local(out):
            os.replace(path, os.fspath(target))
            return
        with open(path, "rb") as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)


def write_manifest(
    root: epath.Path,
    raw: RawCorpus,
    tokenizer: Tokenizer,
    seq_len: int,
    records_per_shard: int,
    splits: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Writes (last, atomically) and returns the manifest of a prepared dataset whose
    `splits` hold each split's documents, tokens, skipped (by reason) and bytes."""
    described = {}
    for split, stats in splits.items():
        records = -(-stats["tokens"] // (seq_len + 1))
        count = num_shards(records, records_per_shard)
        described[split] = {
            **{k: stats[k] for k in ("documents", "tokens", "skipped", "bytes")},
            "records": records,
            "padding_tokens": records * (seq_len + 1) - stats["tokens"],
            "shards": [shard_name(split, i, count) for i in range(count)],
        }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "packing_format_version": packing.FORMAT_VERSION,
        "fingerprint": fingerprint(raw.fingerprint, tokenizer, seq_len),
        "dataset": raw.name,
        "raw_fingerprint": raw.fingerprint,
        "raw_path": raw.path,
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "vocab_size": tokenizer.vocab_size,
        "seq_len": seq_len,
        "records_per_shard": records_per_shard,
        "splits": described,
    }
    write_atomically(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest
