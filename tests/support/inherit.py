"""The tiny parent and child models of the parameter-inheritance tests."""

from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.train import TrainConfig

PARENT = ModelConfig(
    vocab_size=64,
    d_model=32,
    n_layers=3,
    n_heads=8,
    n_kv_heads=4,
    head_dim=8,
    ffn_dim=64,
    max_seq_len=32,
    tie_embeddings=False,
    norm_eps=1e-10,
)
CHILD = PARENT.replace(d_model=16, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=32)
ONE_DEVICE = MeshConfig(num_devices=1)
TRAIN = TrainConfig(batch_size=8, seq_len=16, eval_steps=0)
