"""Bits per byte: a tokenizer-independent loss, so runs with different vocabularies compare."""

from __future__ import annotations

import re

import numpy as np
import sentencepiece as spm

from tinylm_jax.data.tokenizer import Tokenizer

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def token_byte_lengths(tokenizer: Tokenizer, vocab_size: int) -> np.ndarray:
    """[V] float32: UTF-8 bytes each id contributes to decoded text.

    Byte-fallback pieces are one byte, control/unknown/unused pieces none, and `▁` decodes to a
    space. Ids past the tokenizer's size (padding of the model's vocab) contribute none. So the
    bytes of a token sequence are those of its decoded text, exactly for our tokenizers (no
    dummy prefix); a dummy-prefix tokenizer (e.g. an imported Llama one) counts one extra byte
    per document, the prefix space that decoding drops.
    """
    processor = spm.SentencePieceProcessor(model_proto=tokenizer.proto)
    lengths = np.zeros(vocab_size, np.float32)
    for i in range(min(processor.get_piece_size(), vocab_size)):
        if processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i):
            continue
        piece = processor.id_to_piece(i)
        if processor.is_byte(i) or _BYTE_PIECE.match(piece):
            lengths[i] = 1
        else:
            lengths[i] = len(piece.replace("\u2581", " ").encode("utf-8"))
    return lengths
