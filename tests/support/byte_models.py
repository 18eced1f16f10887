"""The small token-level and byte-level models of the STLM tests."""

import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.model.byte_level import BYTE_PAD, TokenBytes

V, D, T = 61, 32, 6
BASE = ModelConfig(
    vocab_size=V, d_model=D, n_layers=3, n_heads=4, ffn_dim=64, max_seq_len=64, init_std=0.2
)
# Byte-level tests: one transformer layer is enough to see token-level causality.
BYTES = dict(
    n_layers=1, byte_embed_dim=16, max_token_bytes=T, byte_encoder_layers=2, byte_decoder_layers=1
)


def random_token_bytes(seed: int = 0) -> TokenBytes:
    """Each id: 1..T random byte values, then pads; all rows distinct (ids in the first byte)."""
    rng = np.random.default_rng(seed)
    table = np.full((V, T), BYTE_PAD, np.int32)
    for i in range(V):
        n = int(rng.integers(1, T + 1))
        table[i, :n] = rng.integers(0, 256, n)
        table[i, 0] = i
    return TokenBytes(table, np.ones(V, np.bool_))
