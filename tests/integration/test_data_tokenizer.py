"""Tokenizers (SentencePiece and Hugging Face tokenizer.json): exact round trips, ids, bytes per
id, incremental decoding, fingerprints, errors."""

import dataclasses
import inspect

import pytest

from tests.helpers import write_byte_level_bpe
from tests.support.texts import UNICODE
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import (
    HFTokenizer,
)


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A byte-level BPE tokenizer.json (trained with `tokenizers`) and its tokenizer_config."""
    texts = [inspect.getsource(inspect)] + UNICODE
    return write_byte_level_bpe(tmp_path_factory.mktemp("bpe"), texts, vocab_size=400)


def test_prepare_data_with_a_tokenizer_json(bpe_dir, data_dir):
    config = DataConfig(max_documents=20, validation_fraction=0.1, num_workers=2)
    data = pipeline.prepare_data(dataclasses.replace(config, tokenizer=str(bpe_dir)), 64)
    assert isinstance(data.tokenizer, HFTokenizer)
    assert data.tokenizer.fingerprint[:16] in data.stats["packed_path"]
    record = data.train[0]["tokens"]
    assert record[0] == data.tokenizer.bos_id and record.max() < data.tokenizer.vocab_size
