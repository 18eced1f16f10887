"""ModelConfig: every architectural knob the tiny-LM recipes ablate."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from tinylm_jax.errors import ConfigError

ACTIVATIONS = ("swiglu", "geglu", "gelu", "relu")
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# 'auto' computes in bfloat16 where the matmul units are bf16 (GPU, TPU) and in float32 on CPU,
# whose XLA backend has no faster bf16 path for the step; parameters stay in `param_dtype`.
AUTO_DTYPES = {"gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16", "tpu": "bfloat16"}
# float16's 5 exponent bits underflow small gradients unless the loss is scaled (Micikevicius et
# al., arXiv 1710.03740, section 3.2); tinylm has no loss scaling, so it refuses float16.
FLOAT16_REFUSAL = (
    "float16 needs dynamic loss scaling, which tinylm does not implement; use 'bfloat16' "
    "(the same speed on GPU/TPU, float32's exponent range) or 'auto'"
)
INPUT_EMBEDDINGS = ("tokens", "byte_pooled")
OUTPUT_HEADS = ("tokens", "bytes")
FFN_SHARING = ("none", "all")
# 'tinylm': our byte path (pads masked, an end-of-token mark, skip projections); 'stlm': the
# byte path of the released Super Tiny Language Models code (model/byte_level.py says how).
BYTE_VARIANTS = ("tinylm", "stlm")
# 'auto': blockwise on CPU, cuDNN on GPU for half precision, XLA otherwise (model/attention.py).
ATTENTION_IMPLS = ("auto", "blockwise", "xla", "cudnn")
BYTE_HEADS = 8  # attention heads of the byte encoder/decoder blocks (STLM, arXiv 2405.14159)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A Llama-family decoder.

    `ffn_dim` wins when set; otherwise the FFN width is `ffn_ratio * d_model` rounded up to a
    multiple of `ffn_multiple_of` (PanGu-pi Pro: 8/3 rounded up to 256). `head_dim` defaults to
    `d_model // n_heads`; `n_kv_heads` defaults to `n_heads` (MHA), 1 is MQA, between is GQA.

    Super Tiny Language Models levers (arXiv 2405.14159): `input_embedding='byte_pooled'`
    replaces the token embedding table by a byte encoder (each token's first `max_token_bytes`
    bytes, embedded at `byte_embed_dim`, `byte_encoder_layers` bidirectional blocks, mean-pooled
    over real bytes); `output_head='bytes'` predicts the next token's bytes with
    `byte_decoder_layers` blocks instead of logits over the vocabulary; `ffn_sharing='all'`
    makes every layer use one FFN (STLM cites MobiLlama, arXiv 2402.16840, for it).
    `byte_variant` picks the byte path: 'tinylm' (ours: pads masked out of the encoder, the
    byte loss codes each token's end, skip projections) or 'stlm' (the released STLM code:
    pads pooled, 4x GELU FFNs without residual, pads ignored by the loss, and a reconstruction
    loss of the input bytes added to the training loss when both byte options are on).

    `loss_chunk_tokens` > 0 computes the training cross entropy in chunks of about that many
    tokens of the (micro)batch, never holding the float32 `[tokens, vocab]` logits at once
    (`train.loss.cross_entropy`); 0 is the dense head. Like `remat`, it trades compute (the
    head matmul runs again in the backward pass) for memory, and changes no result.
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
    dtype: str = "auto"
    param_dtype: str = "float32"
    init_std: float = 0.02
    scale_init_by_depth: bool = False
    scan_layers: bool = False
    remat: str = "none"
    document_attention: bool = True
    attention_impl: str = "auto"
    attention_block_size: int = 128
    input_embedding: str = "tokens"
    byte_embed_dim: int = 128
    max_token_bytes: int = 12
    byte_encoder_layers: int = 4
    output_head: str = "tokens"
    byte_decoder_layers: int = 7
    byte_variant: str = "tinylm"
    ffn_sharing: str = "none"
    loss_chunk_tokens: int = 0

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
        if self.attention_impl not in ATTENTION_IMPLS:
            fail("attention_impl", f"{self.attention_impl!r} is not one of {ATTENTION_IMPLS}")
        if self.attention_block_size <= 0:
            fail("attention_block_size", f"must be positive, got {self.attention_block_size}")
        if self.remat not in REMAT_POLICIES:
            fail("remat", f"{self.remat!r} is not one of {REMAT_POLICIES}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            fail("dtype", f"{self.dtype!r} is not one of {('auto', *DTYPES)}")
        if self.param_dtype not in DTYPES:
            fail("param_dtype", f"{self.param_dtype!r} is not one of {tuple(DTYPES)}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) == "float16":
                fail(name, FLOAT16_REFUSAL)
        if self.ffn_dim is None and (self.ffn_ratio <= 0 or self.ffn_multiple_of <= 0):
            fail(
                "ffn_ratio", "ffn_ratio and ffn_multiple_of must be positive when ffn_dim is unset"
            )

        if self.loss_chunk_tokens < 0:
            fail(
                "loss_chunk_tokens",
                f"must be 0 (dense) or positive, got {self.loss_chunk_tokens}",
            )
        self._check_stlm(fail)

    def _check_stlm(self, fail) -> None:
        for name, allowed in (
            ("input_embedding", INPUT_EMBEDDINGS),
            ("output_head", OUTPUT_HEADS),
            ("ffn_sharing", FFN_SHARING),
            ("byte_variant", BYTE_VARIANTS),
        ):
            if getattr(self, name) not in allowed:
                fail(name, f"{getattr(self, name)!r} is not one of {allowed}")
        if not self.uses_bytes:
            if self.byte_variant != "tinylm":
                fail(
                    "byte_variant",
                    f"{self.byte_variant!r} changes the byte embedder and byte head, but this "
                    "model has neither; set ModelConfig.input_embedding = 'byte_pooled' and/or "
                    "output_head = 'bytes', or leave byte_variant at 'tinylm'",
                )
            return
        if self.max_token_bytes <= 0:
            fail("max_token_bytes", f"must be positive, got {self.max_token_bytes}")
        if self.byte_embed_dim <= 0 or self.byte_embed_dim % BYTE_HEADS:
            fail(
                "byte_embed_dim",
                f"must be a positive multiple of the {BYTE_HEADS} byte attention heads, "
                f"got {self.byte_embed_dim}",
            )
        if self.input_embedding == "byte_pooled" and self.byte_encoder_layers < 1:
            fail("byte_encoder_layers", f"must be at least 1, got {self.byte_encoder_layers}")
        if self.output_head == "bytes" and self.byte_decoder_layers < 0:
            fail("byte_decoder_layers", f"must be at least 0, got {self.byte_decoder_layers}")
        if self.output_head == "bytes" and self.loss_chunk_tokens:
            fail(
                "loss_chunk_tokens",
                "chunks the token head's cross entropy, but output_head='bytes' predicts bytes; "
                "set ModelConfig.loss_chunk_tokens = 0",
            )
        if self.tie_embeddings:
            fail(
                "tie_embeddings",
                "tying needs both the token embedding table and the token head, but "
                f"input_embedding={self.input_embedding!r} and output_head={self.output_head!r}; "
                "set ModelConfig.tie_embeddings = False",
            )

    @property
    def uses_bytes(self) -> bool:
        """Whether the model reads or predicts token bytes (and so needs the token byte table)."""
        return self.input_embedding == "byte_pooled" or self.output_head == "bytes"

    @property
    def reconstructs_bytes(self) -> bool:
        """Whether training adds STLM's reconstruction loss: the byte head decoding each
        token's own bytes from its pooled embedding (needs both byte options)."""
        return (
            self.byte_variant == "stlm"
            and self.input_embedding == "byte_pooled"
            and self.output_head == "bytes"
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
    def resolved_dtype(self) -> str:
        """The compute dtype's name on this process's default backend ('auto' resolved)."""
        return resolve_dtype(self.dtype, jax.default_backend())

    @property
    def compute_dtype(self) -> jnp.dtype:
        return DTYPES[self.resolved_dtype]

    @property
    def weight_dtype(self) -> jnp.dtype:
        return DTYPES[self.param_dtype]

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def resolve_dtype(dtype: str, platform: str) -> str:
    """`ModelConfig.dtype` on `platform` (a JAX backend name): 'auto' is bfloat16 on GPU and
    TPU, float32 elsewhere (CPU); any other name is itself."""
    if dtype != "auto":
        return dtype
    return AUTO_DTYPES.get(platform, "float32")
