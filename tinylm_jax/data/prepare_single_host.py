"""`tinylm data prepare --runner=none`: a prepared dataset made on this host without Beam.

The records are the single-host path's own (`pipeline.prepare_data`, cached as usual), cut
into the shards and described by the manifest the Beam pipeline writes, so either way gives
the same dataset (same fingerprint: one is reused for the other). The output may be local or
on an object store (gs://).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from etils import epath

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data import prepared as prepared_lib
from tinylm_jax.errors import DataError


def prepare(config: DataConfig, seq_len: int, out: str) -> dict[str, Any]:
    """Prepares the dataset of `config` at `seq_len` into `out`; returns its manifest.

    A finished dataset with the same fingerprint is reused as it is.
    """
    if seq_len <= 0:
        raise DataError(f"TrainConfig.seq_len must be positive; got {seq_len}.")
    config = dataclasses.replace(config, prepared=None, mixture=())  # what a run then reads
    _, raw, tokenizer = pipeline.corpus_and_tokenizer(config)
    fingerprint = prepared_lib.fingerprint(raw.fingerprint, tokenizer, seq_len)
    root = epath.Path(out)
    finished = prepared_lib.start_output(root, fingerprint, tokenizer)
    if finished is not None:
        return finished
    data = pipeline.prepare_data(config, seq_len)
    sources = {"train": data.train, "validation": data.validation}
    rps = config.records_per_shard
    for split in raw.splits:
        source = sources[split]
        count = prepared_lib.num_shards(len(source), rps)
        for shard in range(count):
            ids = range(shard * rps, min((shard + 1) * rps, len(source)))
            name = prepared_lib.shard_name(split, shard, count)
            prepared_lib.write_shard(source.raw_records(ids), root, name)
    splits = {split: data.stats[split] for split in raw.splits}
    return prepared_lib.write_manifest(root, raw, tokenizer, seq_len, rps, splits)
