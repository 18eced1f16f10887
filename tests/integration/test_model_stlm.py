"""Super Tiny Language Models levers (arXiv 2405.14159): FFN sharing, byte-pooled input, byte
head — parameters, masking, causality, losses, sampling, sharding and the token byte table."""

import numpy as np
import pytest

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.engine.token_bytes import build_token_bytes, token_symbols
from tinylm_jax.model.byte_level import (
    BYTE_PAD,
)


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> Tokenizer:
    # The tests' small stdlib corpus and tokenizer (shared through the session's data cache).
    config = DataConfig(max_documents=60, vocab_size=512, validation_fraction=0.05)
    return load_tokenizer(pipeline.train_tokenizer_for(config))


def test_byte_table_round_trips_every_token(tokenizer):
    vocab = tokenizer.vocab_size + 4  # ids past the tokenizer (padded model vocab) included
    token_bytes = build_token_bytes(tokenizer, vocab, 12)
    table = token_bytes.table_VT
    symbols, kinds = token_symbols(tokenizer, vocab)
    n_byte_pieces = 0
    for i in range(vocab):
        row = [s for s in table[i].tolist() if s != BYTE_PAD]
        assert row == symbols[i][:12]
        if kinds[i] == 0:  # ordinary pieces: their bytes are the tokenizer's decoding
            assert bytes(symbols[i]) == tokenizer.decode([i]).encode("utf-8"), i
        elif kinds[i] == 1:
            n_byte_pieces += 1
            assert len(row) == 1 and tokenizer.id_to_piece(i) == f"<0x{row[0]:02X}>"
        else:
            assert len(row) == 1 and row[0] >= 256
    assert n_byte_pieces == 256
    # Texts: the bytes of their tokens concatenate to the text.
    for text in ["def f(x):\n\treturn x  # ok", "naïve café ☕ 日本語"]:
        ids = tokenizer.encode(text)
        assert all(len(symbols[i]) <= 12 for i in ids)
        spelled = b"".join(bytes(s for s in table[i] if s != BYTE_PAD) for i in ids)
        assert spelled == text.encode("utf-8")
    # One canonical id per distinct row, an ordinary piece over a byte-fallback one.
    rows = {}
    for i in np.flatnonzero(token_bytes.canonical_V):
        assert table[i].tobytes() not in rows
        rows[table[i].tobytes()] = i
    assert len(rows) == len({r.tobytes() for r in table})
    a = tokenizer.encode("a")
    assert len(a) == 1 and token_bytes.canonical_V[a[0]] and kinds[a[0]] == 0
    assert build_token_bytes(tokenizer, vocab, 12).fingerprint == token_bytes.fingerprint
    assert build_token_bytes(tokenizer, vocab, 8).fingerprint != token_bytes.fingerprint
