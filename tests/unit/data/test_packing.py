"""Packing: no lost tokens, segments/positions, padding only at the end, stable ids."""

import numpy as np

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data.packing import Packer


def _pack(docs, record_len, pad_id=0):
    packer = Packer(record_len, pad_id)
    records = [r for d in docs for r in packer.add(np.asarray(d, np.int32))]
    last, pad = packer.finish()
    return records + ([last] if last is not None else []), pad


def test_packer_layout():
    docs = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 11, 12, 2]]  # 14 tokens.
    records, pad = _pack(docs, record_len=5)
    assert len(records) == 3 and pad == 1
    tokens = np.stack(records)[:, 0]
    np.testing.assert_array_equal(tokens.ravel()[:14], np.concatenate(docs))
    np.testing.assert_array_equal(records[0][1], [1, 1, 1, 1, 2])  # Segments.
    np.testing.assert_array_equal(records[0][2], [0, 1, 2, 3, 0])  # Positions.
    np.testing.assert_array_equal(records[1][1], [1, 1, 2, 2, 2])  # Doc 2 continues.
    np.testing.assert_array_equal(records[1][2], [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(
        records[2], [[10, 11, 12, 2, 0], [1, 1, 1, 1, 0], [0, 1, 2, 3, 0]]
    )


def test_packer_exact_fit_has_no_padding():
    records, pad = _pack([[1, 2], [1, 2]], record_len=2)
    assert len(records) == 2 and pad == 0


def test_data_config_is_gin_configurable(gin_clean):
    from tinylm_jax.config import gin as config_lib

    config = config_lib.parse(
        gin_params=["DataConfig.vocab_size = 300", "DataConfig.paths = ('a.txt',)"]
    ).data
    assert config.vocab_size == 300 and config.paths == ("a.txt",)
    assert DataConfig().vocab_size == 8192  # constructing a config never reads gin
