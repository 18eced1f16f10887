"""The small token-level and byte-level models of the STLM tests."""

from tinylm_jax.config.model import ModelConfig

V, D, T = 61, 32, 6
BASE = ModelConfig(
    vocab_size=V, d_model=D, n_layers=3, n_heads=4, ffn_dim=64, max_seq_len=64, init_std=0.2
)
# Byte-level tests: one transformer layer is enough to see token-level causality.
BYTES = dict(
    n_layers=1, byte_embed_dim=16, max_token_bytes=T, byte_encoder_layers=2, byte_decoder_layers=1
)
