"""Tokenizers (SentencePiece and Hugging Face tokenizer.json): exact round trips, ids, bytes per
id, incremental decoding, fingerprints, errors."""

import inspect
import json
import pickle
import random

import numpy as np
import pytest
from tokenizers import pre_tokenizers

from tests._data_corpus_util import make_text
from tests.helpers import write_byte_level_bpe
from tests.support.texts import UNICODE
from tinylm_jax.data import tokenizer as tokenizer_lib
from tinylm_jax.data.tokenizer import (
    BYTE_LEVEL_CHARS,
    HFTokenizer,
    PieceKind,
    SentencePieceTokenizer,
    check_vocab,
    load_tokenizer,
)
from tinylm_jax.errors import DataError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.interop import hf_tokenizer


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
    from tinylm_jax.config import gin as config_lib
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


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A byte-level BPE tokenizer.json (trained with `tokenizers`) and its tokenizer_config."""
    texts = [inspect.getsource(inspect)] + UNICODE
    return write_byte_level_bpe(tmp_path_factory.mktemp("bpe"), texts, vocab_size=400)


def _check_bytes_and_incremental_decoding(tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    lengths = token_byte_lengths(tokenizer, tokenizer.vocab_size + 8)  # padded model vocab
    assert lengths[ids].sum() == len(text.encode("utf-8"))
    decoder = tokenizer.incremental_decoder()
    pushed = [decoder.push(i) for i in ids]
    assert "".join(pushed) + decoder.flush() == text


@pytest.mark.parametrize("text", UNICODE)
def test_byte_level_bpe_round_trip_bytes_and_incremental_decoding(bpe_dir, text):
    tokenizer = load_tokenizer(bpe_dir)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.byte_level
    _check_bytes_and_incremental_decoding(tokenizer, text)


def test_byte_level_bpe_ids_pieces_and_fingerprint(bpe_dir, tmp_path):
    tokenizer = load_tokenizer(bpe_dir / "tokenizer.json")
    # No BOS declared: documents start with the EOS; pad as declared; no unk token.
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id) == (
        0,
        0,
        1,
        None,
    )
    assert set(BYTE_LEVEL_CHARS) == set(pre_tokenizers.ByteLevel.alphabet())
    assert tokenizer.pieces[0] == (PieceKind.SPECIAL, b"")
    # An unseen character: two byte tokens, each standing for one raw byte of its UTF-8; the
    # incremental decoder holds the first back and releases the character with the second.
    split = tokenizer.encode("ж")
    assert [tokenizer.pieces[i] for i in split] == [
        (PieceKind.NORMAL, b"\xd0"),
        (PieceKind.NORMAL, b"\xb6"),
    ]
    decoder = tokenizer.incremental_decoder()
    assert [decoder.push(i) for i in split] == ["", "ж"]
    decoder.push(split[0])
    assert decoder.flush() == "\ufffd"  # a character cut off at the end
    # Special-token strings in text are text, so no document injects an EOS.
    assert tokenizer.eos_id not in tokenizer.encode("a <|endoftext|> b")
    batch = tokenizer.encode_batch(UNICODE)
    assert batch == [tokenizer.encode(t) for t in UNICODE]
    # The fingerprint follows the files' contents, not where they are or how they travel.
    tokenizer.save(tmp_path / "copy")
    same = [load_tokenizer(tmp_path / "copy"), pickle.loads(pickle.dumps(tokenizer))]
    assert {t.fingerprint for t in same} == {tokenizer.fingerprint}
    config = {"eos_token": "<|pad|>"}
    (tmp_path / "copy" / "tokenizer_config.json").write_text(json.dumps(config))
    other = load_tokenizer(tmp_path / "copy")
    assert other.eos_id == other.pad_id == 1 and other.fingerprint != tokenizer.fingerprint


def test_special_ids_from_generation_config(bpe_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes((bpe_dir / "tokenizer.json").read_bytes())
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": [0, 1]})
    )
    tokenizer = load_tokenizer(tmp_path)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 0, 0)
    # `save` writes the resolved tokens, so the copy needs no generation_config.json.
    tokenizer.save(tmp_path / "copy")
    assert load_tokenizer(tmp_path / "copy").fingerprint == tokenizer.fingerprint


def test_byte_fallback_tokenizer_json_matches_sentencepiece(tok, tmp_path):
    """A Llama-2-style tokenizer.json (Metaspace, `<0xNN>` byte fallback) of the same model."""
    sp, docs = tok
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf_tokenizer.tokenizer_json(sp)))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(hf_tokenizer.tokenizer_config(sp, 256))
    )
    tokenizer = load_tokenizer(tmp_path)
    assert isinstance(tokenizer, HFTokenizer) and not tokenizer.byte_level
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.unk_id) == (1, 2, 0, 3)
    assert tokenizer.pieces == sp.pieces
    for text in UNICODE[:2] + docs[:3]:
        assert tokenizer.encode(text) == sp.encode(text)
        _check_bytes_and_incremental_decoding(tokenizer, text)


def test_tokenizer_json_errors(bpe_dir, tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path} holds neither tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(DataError, match=f"{tmp_path / 'tokenizer.json'} is not a valid Hugging"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((bpe_dir / "tokenizer.json").read_bytes())
    with pytest.raises(DataError, match="no EOS token is declared.*tokenizer_config.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    with pytest.raises(DataError, match="eos_token '</s>' is not in the tokenizer's vocabulary"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(DataError, match="tokenizer_config.json beside tokenizer .* not valid JSON"):
        load_tokenizer(tmp_path)
