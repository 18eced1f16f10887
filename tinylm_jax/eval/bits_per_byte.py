"""Bits per byte: a tokenizer-independent loss, so runs with different vocabularies compare."""

from __future__ import annotations

import numpy as np

from tinylm_jax.data.tokenizer import Tokenizer


def token_byte_lengths(tokenizer: Tokenizer, vocab_size: int) -> np.ndarray:
    """[V] float32: bytes each id contributes to decoded text (`Tokenizer.pieces`).

    Byte-fallback pieces are one byte, special ids none, `▁` decodes to a space, and a
    byte-level BPE token counts the raw bytes its characters stand for (not the UTF-8 of those
    characters). Ids past the tokenizer's size (padding of the model's vocab) contribute none.
    So the bytes of a token sequence are those of its decoded text, exactly for our tokenizers
    and byte-level BPE; a dummy-prefix tokenizer (e.g. an imported Llama-2 one) counts one
    extra byte per document, the prefix space that decoding drops.
    """
    lengths = np.zeros(vocab_size, np.float32)
    for i, (_, data) in enumerate(tokenizer.pieces[:vocab_size]):
        lengths[i] = len(data)
    return lengths
