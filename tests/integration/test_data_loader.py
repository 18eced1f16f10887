"""Grain loaders: determinism, checkpoint/restore, sharding, subsets, eval padding."""

import itertools

import numpy as np
import pytest

from tests._data_corpus_util import write_corpus
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data.pipeline import make_eval_iterator, make_train_iterator, prepare_data
from tinylm_jax.errors import DataError

SEQ_LEN = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    write_corpus(root / "c", n_txt=10, n_jsonl=10)
    config = DataConfig(
        dataset="text_files",
        paths=(str(root / "c"),),
        vocab_size=300,
        validation_fraction=0.2,
        data_dir=str(root / "data"),
    )
    prepared = prepare_data(config, SEQ_LEN)
    assert len(prepared.train) >= 50 and len(prepared.validation) >= 5
    return prepared


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_batch_format(data):
    batch = next(make_train_iterator(data, batch_size=4, seed=0))
    expected = {
        "inputs": np.int32,
        "targets": np.int32,
        "segment_ids": np.int32,
        "positions": np.int32,
        "weights": np.float32,
    }
    for k, dtype in expected.items():
        assert batch[k].dtype == dtype and batch[k].shape == (4, SEQ_LEN), k
    assert batch["ids"].dtype == np.int64 and batch["ids"].shape == (4,)
    record = data.train[int(batch["ids"][0])]
    np.testing.assert_array_equal(batch["inputs"][0], record["tokens"][:-1])
    np.testing.assert_array_equal(batch["targets"][0], record["tokens"][1:])
    np.testing.assert_array_equal(batch["weights"][0], record["segment_ids"][1:] != 0)


def test_same_seed_same_batches_and_restore(data):
    first = _take(make_train_iterator(data, 4, seed=1), 6)
    _assert_same(first, _take(make_train_iterator(data, 4, seed=1), 6))
    other = _take(make_train_iterator(data, 4, seed=2), 6)
    assert any((a["ids"] != b["ids"]).any() for a, b in zip(first, other, strict=True))

    # Over an epoch boundary too: 30 batches of 4 > len(train).
    uninterrupted = _take(make_train_iterator(data, 4, seed=3), 30)
    it = make_train_iterator(data, 4, seed=3)
    _take(it, 7)
    state = it.get_state()
    restored = make_train_iterator(data, 4, seed=3)
    restored.set_state(state)
    _assert_same(uninterrupted[7:], _take(restored, 23))


def _epoch_ids(data, shard_index, shard_count, **kwargs):
    it = make_train_iterator(
        data, 1, seed=0, shard_index=shard_index, shard_count=shard_count, num_epochs=1, **kwargs
    )
    return [int(b["ids"][0]) for b in it]


def test_shards_are_disjoint_and_cover_an_epoch(data):
    shard0, shard1 = _epoch_ids(data, 0, 2), _epoch_ids(data, 1, 2)
    assert not set(shard0) & set(shard1)
    assert sorted(shard0 + shard1) == list(range(len(data.train)))
    assert abs(len(shard0) - len(shard1)) <= 1
    assert shard0 != sorted(shard0)  # Shuffled.


def test_sequence_ids_subset(data):
    subset = np.array([3, 5, 8, 13, 21, 34], np.int64)
    ids = _epoch_ids(data, 0, 1, sequence_ids=subset)
    assert sorted(ids) == subset.tolist()
    it = make_train_iterator(data, 4, seed=0, sequence_ids=subset)
    assert set(np.concatenate([b["ids"] for b in _take(it, 10)]).tolist()) <= set(subset.tolist())
    with pytest.raises(DataError, match="sequence_ids must lie in"):
        make_train_iterator(data, 4, seed=0, sequence_ids=np.array([len(data.train)]))
    with pytest.raises(DataError, match="no packed records"):
        make_train_iterator(data, 4, seed=0, sequence_ids=np.array([], np.int64))


def test_eval_iterator_is_fixed_and_pads(data):
    n = len(data.validation)
    batch_size = n // 2 + 1  # Forces one padded row at least.
    batches = list(make_eval_iterator(data, batch_size))
    _assert_same(batches, list(make_eval_iterator(data, batch_size)))
    ids = np.concatenate([b["ids"] for b in batches])
    assert ids[:n].tolist() == list(range(n)) and (ids[n:] == -1).all()
    assert all(b["inputs"].shape == (batch_size, SEQ_LEN) for b in batches)
    weights = np.concatenate([b["weights"] for b in batches])
    assert (weights[n:] == 0).all() and weights[:n].sum() > 0
    assert len(list(make_eval_iterator(data, 1, num_batches=2))) == 2

    # Shards: same number of batches each, disjoint real rows covering everything.
    shards = [list(make_eval_iterator(data, 2, shard_index=i, shard_count=3)) for i in range(3)]
    assert len({len(s) for s in shards}) == 1
    real = [int(i) for s in shards for b in s for i in b["ids"] if i >= 0]
    assert sorted(real) == list(range(n))


def test_bad_loader_arguments(data):
    with pytest.raises(DataError, match="shard_index"):
        make_train_iterator(data, 4, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(DataError, match="batch_size"):
        make_eval_iterator(data, 0)


def test_finite_epochs_end(data):
    it = make_train_iterator(data, 4, seed=0, num_epochs=2)
    assert sum(1 for _ in itertools.islice(it, 10_000)) == 2 * len(data.train) // 4
