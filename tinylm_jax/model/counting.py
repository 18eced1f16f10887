"""Parameter counts, FLOPs per token and memory estimates, computed without allocating."""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.model.byte_level import (
    BYTE_FFN_RATIO,
    BYTE_VOCAB,
    STLM_FFN_RATIO,
    blank_token_bytes,
    encoder_widths,
)
from tinylm_jax.model.transformer import Transformer

ADAM_MOMENTS = 2  # AdamW keeps first and second moments, in float32


def abstract_params(config: ModelConfig, seq_len: int = 8) -> dict:
    """The model's parameter tree as `jax.ShapeDtypeStruct`s (with logical partitioning boxes)."""
    token_bytes = blank_token_bytes(config) if config.uses_bytes else None  # shapes only
    model = Transformer(config, token_bytes=token_bytes)
    tokens = jax.ShapeDtypeStruct((1, min(seq_len, config.max_seq_len)), jnp.int32)
    return jax.eval_shape(lambda t: model.init(jax.random.key(0), t), tokens)["params"]


@dataclasses.dataclass(frozen=True)
class ModelStats:
    total_params: int
    embedding_params: int  # token embedding plus untied output head
    # By component: token_embed or byte_embedder (input), blocks (layers, a shared FFN, final
    # norm), lm_head or byte_decoder (output; absent when tied).
    component_params: dict[str, int]
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


def _byte_block_flops(d_in: int, d_out: int, slots: int, variant: str) -> float:
    """Training FLOPs per byte slot of one `ByteBlock`: matmuls plus bidirectional attention."""
    ffn = (STLM_FFN_RATIO if variant == "stlm" else BYTE_FFN_RATIO) * d_in
    skip = d_in * d_out if d_in != d_out and variant == "tinylm" else 0
    matmul = 4 * d_in * d_in + d_in * ffn + ffn * d_out + skip
    attention = 2 * 2 * slots * d_in  # QK^T and AV over all `slots` keys, no causal halving
    return 6.0 * matmul + 3.0 * attention


def _byte_flops(config: ModelConfig) -> float:
    """Training FLOPs per token of the byte embedder and byte head (0 for token models); STLM's
    reconstruction loss runs the byte head a second time."""
    E, T, D = config.byte_embed_dim, config.max_token_bytes, config.d_model
    variant, flops = config.byte_variant, 0.0
    if config.input_embedding == "byte_pooled":
        widths = encoder_widths(config)
        flops += T * sum(
            _byte_block_flops(a, b, T, variant) for a, b in zip(widths, widths[1:], strict=False)
        )
    if config.output_head == "bytes":
        blocks = config.byte_decoder_layers * _byte_block_flops(E, E, T, variant)
        head = 6.0 * D * T * E + T * (blocks + 6.0 * E * BYTE_VOCAB)
        flops += 2 * head if config.reconstructs_bytes else head
    return flops


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul params + causal attention (QK^T and AV, halved).

    A shared FFN (`ffn_sharing='all'`) still runs in every layer, so it counts n_layers times;
    byte-level models add their byte encoder / decoder over `max_token_bytes` slots per token.
    """
    D, H = config.d_model, config.resolved_head_dim
    N, K, F = config.n_heads, config.resolved_n_kv_heads, config.resolved_ffn_dim
    attn_proj = D * H * (2 * N + 2 * K)
    mlp = D * F * (3 if config.gated else 2)
    head = D * config.vocab_size if config.output_head == "tokens" else 0
    matmul_params = config.n_layers * (attn_proj + mlp) + head
    # Forward attention is 2 matmuls of 2*L*N*H flops per token; causal masking halves it.
    attention = config.n_layers * 2 * 2 * seq_len * N * H / 2
    return 6.0 * matmul_params + 3.0 * attention + _byte_flops(config)


COMPONENTS = ("token_embed", "byte_embedder", "blocks", "lm_head", "byte_decoder")


def _component(name: str) -> str:
    if name.startswith("layers") or name in ("shared_mlp", "final_norm"):
        return "blocks"
    return name


def model_stats(config: ModelConfig, seq_len: int | None = None) -> ModelStats:
    seq_len = seq_len or config.max_seq_len
    params = nn.unbox(abstract_params(config))
    leaves = jax.tree_util.tree_leaves(params)
    total = sum(math.prod(x.shape) for x in leaves)
    components: dict[str, int] = {}
    for name, subtree in params.items():
        count = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(subtree))
        components[_component(name)] = components.get(_component(name), 0) + count
    components = {k: components[k] for k in COMPONENTS if k in components}
    embedding = components.get("token_embed", 0) + components.get("lm_head", 0)
    param_bytes = sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves)
    return ModelStats(
        total_params=total,
        embedding_params=embedding,
        component_params=components,
        non_embedding_params=total - embedding,
        embedding_share=embedding / total,
        flops_per_token=flops_per_token(config, seq_len),
        param_bytes=param_bytes,
        adam_state_bytes=ADAM_MOMENTS * 4 * total,
    )
