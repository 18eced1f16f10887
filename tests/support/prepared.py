"""A prepared dataset (`DataConfig.prepared`) made of a packed cache's records, one shard per
split, as `tinylm data prepare` lays one out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tinylm_jax.data import pipeline, prepared


def write_prepared(data: pipeline.PreparedData, out: Path) -> Path:
    """`data`'s tokenizer and packed splits as a prepared dataset in `out`; returns `out`."""
    data.tokenizer.save(out / prepared.TOKENIZER_DIR)
    splits = {}
    for split in ("train", "validation"):
        stats = data.stats[split]
        name = prepared.shard_name(split, 0, 1)
        shutil.copyfile(f"{data.stats['packed_path']}/{split}.array_record", out / name)
        splits[split] = {"records": stats["records"], "documents": stats["documents"]}
        splits[split]["shards"] = [name]
    manifest = {"format": prepared.FORMAT, "format_version": prepared.FORMAT_VERSION}
    manifest.update(dataset="python_stdlib", seq_len=data.seq_len, fingerprint="f", splits=splits)
    (out / prepared.MANIFEST).write_text(json.dumps(manifest))
    return out
