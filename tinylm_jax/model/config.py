"""ModelConfig: every architectural knob the tiny-LM recipes ablate."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from tinylm_jax.errors import ConfigError

ACTIVATIONS = ("swiglu", "geglu", "gelu", "relu")
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A Llama-family decoder.

    `ffn_dim` wins when set; otherwise the FFN width is `ffn_ratio * d_model` rounded up to a
    multiple of `ffn_multiple_of` (PanGu-pi Pro: 8/3 rounded up to 256). `head_dim` defaults to
    `d_model // n_heads`; `n_kv_heads` defaults to `n_heads` (MHA), 1 is MQA, between is GQA.
    """

    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    head_dim: int | None = None
    ffn_dim: int | None = None
    ffn_ratio: float = 8 / 3
    ffn_multiple_of: int = 256
    activation: str = "swiglu"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    max_seq_len: int = 2048
    dtype: str = "float32"
    param_dtype: str = "float32"
    init_std: float = 0.02
    scale_init_by_depth: bool = False
    scan_layers: bool = False
    remat: str = "none"
    document_attention: bool = True

    def __post_init__(self) -> None:
        def fail(field: str, why: str) -> None:
            raise ConfigError(f"ModelConfig.{field}: {why}")

        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            if getattr(self, name) <= 0:
                fail(name, f"must be positive, got {getattr(self, name)}")
        if self.head_dim is None and self.d_model % self.n_heads:
            fail(
                "n_heads",
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "set ModelConfig.head_dim explicitly or choose a divisor",
            )
        if self.resolved_head_dim % 2:
            fail(
                "head_dim", f"rotary embeddings need an even head_dim, got {self.resolved_head_dim}"
            )
        if self.n_heads % self.resolved_n_kv_heads:
            fail(
                "n_kv_heads",
                f"n_heads={self.n_heads} must be a multiple of "
                f"n_kv_heads={self.resolved_n_kv_heads} (grouped-query attention)",
            )
        if self.activation not in ACTIVATIONS:
            fail("activation", f"{self.activation!r} is not one of {ACTIVATIONS}")
        if self.remat not in REMAT_POLICIES:
            fail("remat", f"{self.remat!r} is not one of {REMAT_POLICIES}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                fail(name, f"{getattr(self, name)!r} is not one of {tuple(DTYPES)}")
        if self.ffn_dim is None and (self.ffn_ratio <= 0 or self.ffn_multiple_of <= 0):
            fail(
                "ffn_ratio", "ffn_ratio and ffn_multiple_of must be positive when ffn_dim is unset"
            )

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def resolved_n_kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def resolved_ffn_dim(self) -> int:
        if self.ffn_dim is not None:
            return self.ffn_dim
        raw = self.ffn_ratio * self.d_model
        return int(math.ceil(raw / self.ffn_multiple_of - 1e-9) * self.ffn_multiple_of)

    @property
    def gated(self) -> bool:
        return self.activation in ("swiglu", "geglu")

    @property
    def compute_dtype(self) -> jnp.dtype:
        return DTYPES[self.dtype]

    @property
    def weight_dtype(self) -> jnp.dtype:
        return DTYPES[self.param_dtype]

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)
