"""Weighted mixtures: weights within sampling noise, ids naming sources, exact resume."""

import numpy as np
import pytest

from tinylm_jax.data import loader, mixture
from tinylm_jax.errors import DataError

SEQ = 8


def _source(n, tag):
    """n records whose tokens carry (tag, record index), as `packing.PackedSource` gives."""
    return [
        {
            "tokens": np.full(SEQ + 1, tag * 10_000 + i, np.int32),
            "segment_ids": np.ones(SEQ + 1, np.int32),
            "positions": np.arange(SEQ + 1, dtype=np.int32),
            "id": np.int64(i),
        }
        for i in range(n)
    ]


def _mix(weights=(0.7, 0.3), sizes=(2000, 300)):
    sources = [_source(n, tag) for tag, n in enumerate(sizes)]
    return sources, mixture.MixtureSource(sources, weights, ["prose", "code"], seed=5)


def test_weights_hold_within_sampling_noise_over_1000_training_records():
    _, mix = _mix()
    batches = iter(loader.make_train_loader(mix, batch_size=10, seed=0))
    ids = np.concatenate([next(batches)["ids"] for _ in range(100)])
    code_share = np.mean(mixture.source_of(ids) == 1)
    sigma = np.sqrt(0.3 * 0.7 / len(ids))
    assert abs(code_share - 0.3) < 3 * sigma, code_share


def test_records_are_their_sources_records_and_ids_name_the_source():
    sources, mix = _mix()
    assert list(mixture.block_quotas([0.7, 0.3])) == [717, 307]  # 716.8, 307.2: sum 1024
    seen = set()
    for j in range(len(mix)):
        record = mix[j]
        s, r = divmod(int(record["id"]), mixture.SOURCE_STRIDE)
        assert (record["tokens"] == sources[s][r]["tokens"]).all()
        seen.add((s, r))
    # The small source is upsampled: all 300 code records recur; prose is read in part.
    assert {r for s, r in seen if s == 1} == set(range(300))


def test_resume_from_the_iterator_state_gives_the_same_records():
    _, mix = _mix()
    it = iter(loader.make_train_loader(mix, batch_size=4, seed=3))
    for _ in range(30):
        next(it)
    state = it.get_state()
    expected = [next(it)["ids"] for _ in range(20)]
    resumed = iter(loader.make_train_loader(mix, batch_size=4, seed=3))
    resumed.set_state(state)
    assert all((next(resumed)["ids"] == e).all() for e in expected)


def test_bad_weights_and_names_are_errors():
    sources = [_source(3, 0), _source(3, 1)]
    with pytest.raises(DataError, match="weights must be > 0; got code=0"):
        mixture.MixtureSource(sources, [1.0, 0.0], ["prose", "code"], seed=0)
    with pytest.raises(DataError, match="must differ"):
        mixture.MixtureSource(sources, [1.0, 1.0], ["a", "a"], seed=0)
    with pytest.raises(DataError, match="needs records"):
        mixture.MixtureSource([sources[0], []], [1.0, 1.0], ["a", "b"], seed=0)


def test_source_tokens_count_each_rows_real_targets_by_its_source():
    ids = np.array([mixture.SOURCE_STRIDE + 4, 7, -1, mixture.SOURCE_STRIDE])
    weights = np.ones((4, SEQ), np.float32)
    weights[0, 5:] = 0  # the padded end of a source's last record
    assert mixture.source_tokens(ids, weights, 3).tolist() == [SEQ, 5 + SEQ, 0]
