"""The token byte table of byte-level models, built once from the run's tokenizer.

Every id becomes the bytes it adds to decoded text (`Tokenizer.pieces`: UTF-8 with `▁` a
space, the raw bytes of a byte-level BPE token), a byte-fallback piece `<0xAB>` its one
byte, BOS/EOS their own symbols and any other special id `BYTE_OTHER`; rows are truncated or
right-padded to `ModelConfig.max_token_bytes`. The build is deterministic, so a workdir's
tokenizer rebuilds it; its fingerprint is saved with each checkpoint
(`token_bytes_fingerprint`) so a changed table is caught.
"""

from __future__ import annotations

import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data.tokenizer import PieceKind, Tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.model.byte_level import BYTE_BOS, BYTE_EOS, BYTE_OTHER, BYTE_PAD, TokenBytes


def token_symbols(tokenizer: Tokenizer, vocab_size: int) -> tuple[list[list[int]], list[int]]:
    """Each id's full symbol list (untruncated) and its kind: 0 ordinary piece, 1 byte-fallback
    piece, 2 special (control/unknown/unused, and ids past the tokenizer)."""
    special = {tokenizer.bos_id: BYTE_BOS, tokenizer.eos_id: BYTE_EOS}
    pieces = tokenizer.pieces
    symbols: list[list[int]] = []
    kinds: list[int] = []
    for i in range(vocab_size):
        kind, data = pieces[i] if i < len(pieces) else (PieceKind.SPECIAL, b"")
        symbols.append([special.get(i, BYTE_OTHER)] if kind == PieceKind.SPECIAL else list(data))
        kinds.append(int(kind))
    return symbols, kinds


def build_token_bytes(tokenizer: Tokenizer, vocab_size: int, max_token_bytes: int) -> TokenBytes:
    """The [V, T] table and its canonical ids: of the ids sharing a row, an ordinary piece
    before a byte-fallback piece before a special, then the lowest id."""
    symbols, kinds = token_symbols(tokenizer, vocab_size)
    table_VT = np.full((vocab_size, max_token_bytes), BYTE_PAD, np.int32)
    for i, row in enumerate(symbols):
        row = row[:max_token_bytes]
        table_VT[i, : len(row)] = row
    canonical_V = np.zeros(vocab_size, np.bool_)
    seen: set[bytes] = set()
    for i in sorted(range(vocab_size), key=lambda i: (kinds[i], i)):
        key = table_VT[i].tobytes()
        if key not in seen:
            seen.add(key)
            canonical_V[i] = True
    return TokenBytes(table_VT, canonical_V)


def token_bytes_for(config: ModelConfig, tokenizer: Tokenizer) -> TokenBytes | None:
    """The table a model of `config` needs, or None when it neither reads nor predicts bytes."""
    if not config.uses_bytes:
        return None
    return build_token_bytes(tokenizer, config.vocab_size, config.max_token_bytes)


def check_token_bytes(metadata: dict, token_bytes: TokenBytes | None, where: object) -> None:
    """Fails when checkpoint `metadata` was saved with another token byte table than the one
    rebuilt now (e.g. another tokenizer or `max_token_bytes`, or a changed table format)."""
    saved = metadata.get("token_bytes_fingerprint")
    now = None if token_bytes is None else token_bytes.fingerprint
    if saved != now:
        raise DataError(
            f"the checkpoints in {where} were saved with token byte table {str(saved)[:16]}, "
            f"but this run's is {str(now)[:16]}; use the workdir's tokenizer and the "
            "ModelConfig it was trained with, or train in a new --workdir"
        )
