"""SentencePiece training/loading: exact round trips, ids, fingerprints, errors."""

import random

import numpy as np
import pytest

from tests._data_corpus_util import make_text
from tinylm_jax.data import tokenizer as tokenizer_lib
from tinylm_jax.data.tokenizer import SentencePieceTokenizer, check_vocab, load_tokenizer
from tinylm_jax.errors import DataError


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    rng = random.Random(0)
    docs = [make_text(rng, 30) for _ in range(60)]
    proto = tokenizer_lib.train_tokenizer(docs, vocab_size=400)
    path = tmp_path_factory.mktemp("tok") / "a.model"
    path.write_bytes(proto)
    return load_tokenizer(path), docs


@pytest.mark.parametrize(
    "text",
    [
        "naïve café — 東京 🙂",
        "def f(x):\n\treturn  x  # two  spaces\n\n\n",
        "   leading and trailing   ",
        "unseen: Ωμέγα 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \x00 \r\n",
    ],
)
def test_round_trip(tok, text):
    tokenizer, _ = tok
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_corpus_round_trip_and_ids(tok):
    tokenizer, docs = tok
    for doc, ids in zip(docs, tokenizer.encode_batch(docs, num_threads=2), strict=True):
        assert tokenizer.decode(np.asarray(ids)) == doc
        assert ids == tokenizer.encode(doc)
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    assert tokenizer.vocab_size <= 400
    assert tokenizer.decode([tokenizer.bos_id, *tokenizer.encode("hi"), tokenizer.eos_id]) == "hi"
    assert len(tokenizer.fingerprint) == 64


def test_bpe(tok):
    _, docs = tok
    bpe = SentencePieceTokenizer(
        tokenizer_lib.train_tokenizer(docs, vocab_size=300, model_type="bpe")
    )
    assert bpe.decode(bpe.encode(docs[0])) == docs[0]


def test_errors(tok, tmp_path):
    tokenizer, docs = tok
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a valid SentencePiece model"):
        load_tokenizer(tmp_path / "bad.model")
    with pytest.raises(DataError, match="tokenizer_model_type"):
        tokenizer_lib.train_tokenizer(docs, 400, model_type="wordpiece")
    with pytest.raises(DataError, match="too small"):
        tokenizer_lib.train_tokenizer(docs, 100)
    check_vocab(tokenizer, tokenizer.vocab_size)
    with pytest.raises(DataError, match=f"{tokenizer.vocab_size} pieces.*only 256"):
        check_vocab(tokenizer, 256)


def test_tokenizer_training_knobs_reach_sentencepiece(gin_clean):
    from tinylm_jax import config as config_lib
    from tinylm_jax.data.pipeline import tokenizer_training_settings

    docs = ["x = 123456789 + 987654321\n" * 20, "print('hello world')\n" * 20] * 10
    digits = SentencePieceTokenizer(
        tokenizer_lib.train_tokenizer(docs, 300, "bpe", split_digits=True)
    )
    assert all(len(digits.id_to_piece(i).strip("▁")) <= 1 for i in digits.encode("123456789"))
    numbers = SentencePieceTokenizer(
        tokenizer_lib.train_tokenizer(docs, 300, "bpe", split_digits=False)
    )
    assert len(numbers.encode("123456789")) < 9
    no_bytes = SentencePieceTokenizer(tokenizer_lib.train_tokenizer(docs, 40, byte_fallback=False))
    assert not any(no_bytes.id_to_piece(i).startswith("<0x") for i in range(no_bytes.vocab_size))
    with pytest.raises(DataError, match="tokenizer_character_coverage"):
        tokenizer_lib.train_tokenizer(docs, 300, character_coverage=1.5)

    config = config_lib.parse(
        gin_params=[
            "DataConfig.tokenizer_split_digits = False",
            "DataConfig.tokenizer_byte_fallback = False",
            "DataConfig.tokenizer_character_coverage = 0.99",
            "DataConfig.tokenizer_input_sentence_size = 500",
        ]
    )
    settings = tokenizer_training_settings(config.data)
    assert settings["split_digits"] is False and settings["byte_fallback"] is False
    assert settings["character_coverage"] == 0.99 and settings["input_sentence_size"] == 500
