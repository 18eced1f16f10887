"""Grain loaders: determinism, checkpoint/restore, sharding, subsets, eval padding."""

import numpy as np
import pytest

from tinylm_jax.data.loader import make_train_loader

SEQ_LEN = 16


@pytest.mark.parametrize("num_records, shard_count", [(671, 2), (10, 3), (5, 4)])
def test_uneven_shards_lose_no_record(num_records, shard_count):
    record = {
        "tokens": np.zeros(5, np.int32),
        "segment_ids": np.ones(5, np.int32),
        "positions": np.zeros(5, np.int32),
    }
    source = [dict(record, id=i) for i in range(num_records)]
    seen = [
        int(b["ids"][0])
        for s in range(shard_count)
        for b in make_train_loader(source, 1, 0, s, shard_count, num_epochs=1)
    ]
    assert sorted(seen) == list(range(num_records))
