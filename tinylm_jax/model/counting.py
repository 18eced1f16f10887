"""Parameter counts, FLOPs per token and memory estimates, computed without allocating."""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from tinylm_jax.model.config import ModelConfig
from tinylm_jax.model.transformer import Transformer

ADAM_MOMENTS = 2  # AdamW keeps first and second moments, in float32


def abstract_params(config: ModelConfig, seq_len: int = 8) -> dict:
    """The model's parameter tree as `jax.ShapeDtypeStruct`s (with logical partitioning boxes)."""
    model = Transformer(config)
    tokens = jax.ShapeDtypeStruct((1, min(seq_len, config.max_seq_len)), jnp.int32)
    return jax.eval_shape(lambda t: model.init(jax.random.key(0), t), tokens)["params"]


@dataclasses.dataclass(frozen=True)
class ModelStats:
    total_params: int
    embedding_params: int  # token embedding plus untied output head
    non_embedding_params: int
    embedding_share: float
    flops_per_token: float  # training (forward + backward), causal attention counted once
    param_bytes: int
    adam_state_bytes: int

    @property
    def train_state_bytes(self) -> int:
        return self.param_bytes + self.adam_state_bytes

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "train_state_bytes": self.train_state_bytes}


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params + causal attention (QK^T and AV, halved)."""
    D, H = config.d_model, config.resolved_head_dim
    N, K, F = config.n_heads, config.resolved_n_kv_heads, config.resolved_ffn_dim
    attn_proj = D * H * (2 * N + 2 * K)
    mlp = D * F * (3 if config.gated else 2)
    matmul_params = config.n_layers * (attn_proj + mlp) + D * config.vocab_size
    # Forward attention is 2 matmuls of 2*L*N*H flops per token; causal masking halves it.
    attention = config.n_layers * 2 * 2 * seq_len * N * H / 2
    return 6.0 * matmul_params + 3.0 * attention


def model_stats(config: ModelConfig, seq_len: int | None = None) -> ModelStats:
    seq_len = seq_len or config.max_seq_len
    params = nn.unbox(abstract_params(config))
    leaves = jax.tree_util.tree_leaves(params)
    total = sum(math.prod(x.shape) for x in leaves)
    embedding = math.prod(params["token_embed"].shape)
    if "lm_head" in params:
        embedding += math.prod(params["lm_head"].shape)
    param_bytes = sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves)
    return ModelStats(
        total_params=total,
        embedding_params=embedding,
        non_embedding_params=total - embedding,
        embedding_share=embedding / total,
        flops_per_token=flops_per_token(config, seq_len),
        param_bytes=param_bytes,
        adam_state_bytes=ADAM_MOMENTS * 4 * total,
    )
