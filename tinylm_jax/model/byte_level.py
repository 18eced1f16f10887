"""Byte-level embedder and byte decoder head of Super Tiny Language Models (arXiv 2405.14159).

Text is still cut into tokens by the run's tokenizer; the model sees each token as its first
`max_token_bytes` UTF-8 bytes (right-padded), through a `TokenBytes` table built once from the
tokenizer (`tinylm_jax.engine.token_bytes`).

Two variants (`ModelConfig.byte_variant`). 'tinylm', ours: pads are masked out of the encoder's
attention and mean, each block keeps a residual (a skip projection where the width changes), the
encoder and decoder end in an RMSNorm, and the loss codes each token's end (`coded_slots`), so
summed nats are a code length. 'stlm', the released STLM code (`ByteLevelEmbedder`,
`ByteLevelDecoder`, `ByteLevelTransformerBlock`, `ByteModelShell`): every slot, pads included,
is attended to and averaged; each block's GELU (exact) FFN is 4x its input width with no residual
around it; no final norms (the core model's output reaches the byte decoder unnormalized); the
decoder adds its projected input twice (`x + pos_encoder(x)`, where the encoder already returns
`x + positions`); the loss ignores every pad, so it does not code where a token ends; the byte
modules start from PyTorch's default initialization, as the released byte shell passes no init
function (embeddings N(0, 1), linear kernels U(±1/sqrt(fan_in))).

Shape suffixes: B batch, L length (tokens), T byte slots per token, E byte width, D d_model,
S byte symbols (`BYTE_VOCAB`), V vocabulary, N rows of a flattened [B*L] batch, G byte
attention heads, H their head dim, F byte FFN width, O a block's output width.
"""

from __future__ import annotations

import dataclasses
import hashlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.model import BYTE_HEADS, ModelConfig
from tinylm_jax.model.layers import RMSNorm, _normal, project

Array = jax.Array

# Byte symbols: the 256 byte values, then specials kept apart from every byte value.
BYTE_PAD = 256  # fills a token's unused slots; never an input to attention or the pooled mean
BYTE_BOS = 257
BYTE_EOS = 258
BYTE_OTHER = 259  # any other control/unknown/unused piece, and ids past the tokenizer
BYTE_VOCAB = 260
BYTE_FFN_RATIO = 2  # FFN width of a byte block over its input width (our choice; small blocks)
STLM_FFN_RATIO = 4  # the released STLM byte blocks' FFN width over their input width
STLM_NORM_EPS = 1e-6  # the released STLM RMSNorm's epsilon


@dataclasses.dataclass(frozen=True, eq=False)
class TokenBytes:
    """Every token id's byte symbols, a constant of the model (not a parameter).

    `table_VT` int32 [V, T]: symbols, right-padded with `BYTE_PAD`. `canonical_V` bool [V]: one id
    per distinct row (a byte-fallback piece and an ordinary piece may spell the same bytes), the
    ids the byte head samples from. Hashed and compared by `fingerprint`, so a model holding
    a table stays a valid static argument of `jax.jit`.
    """

    table_VT: np.ndarray
    canonical_V: np.ndarray

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.table_VT, self.canonical_V)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenBytes) and other.fingerprint == self.fingerprint


def _fingerprint(table_VT: np.ndarray, canonical_V: np.ndarray) -> str:
    digest = hashlib.sha256(np.asarray(table_VT.shape, np.int64).tobytes())
    digest.update(np.ascontiguousarray(table_VT, np.int32).tobytes())
    digest.update(np.ascontiguousarray(canonical_V, np.bool_).tobytes())
    return digest.hexdigest()


def byte_init(cfg: ModelConfig, axes: tuple[str, ...], n_in: int = 1):
    """A byte-path parameter's initializer: 'tinylm' normal(`init_std`); 'stlm' PyTorch's
    defaults, N(0, 1) for a table (`n_in` 0) and U(±1/sqrt(fan_in)) for a kernel whose first
    `n_in` dims are its inputs (kaiming-uniform with a = sqrt(5), what `torch.nn.Linear` does)."""
    if cfg.byte_variant != "stlm":
        return _normal(cfg.init_std, axes)
    if n_in == 0:
        return nn.with_logical_partitioning(nn.initializers.normal(1.0), axes)
    fan_in = nn.initializers.variance_scaling(
        1 / 3,
        "fan_in",
        "uniform",
        in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, len(axes))),
    )
    return nn.with_logical_partitioning(fan_in, axes)


def blank_token_bytes(config: ModelConfig) -> TokenBytes:
    """A table of the right shape whose every id is `BYTE_OTHER`: enough for shapes, parameter
    counts and step timing (the cost does not depend on the byte values), never for training."""
    table_VT = np.full((config.vocab_size, config.max_token_bytes), BYTE_PAD, np.int32)
    table_VT[:, 0] = BYTE_OTHER
    return TokenBytes(table_VT, np.ones(config.vocab_size, np.bool_))


def coded_slots(bytes_BLT: Array) -> Array:
    """[..., T] bool: the real bytes plus the first pad, which marks where the token ends."""
    n_real = jnp.sum(bytes_BLT != BYTE_PAD, axis=-1, keepdims=True)
    return jnp.arange(bytes_BLT.shape[-1]) <= n_real


def scored_slots(bytes_BLT: Array, variant: str) -> Array:
    """[..., T] bool: the slots a byte head is scored on. 'tinylm': the real bytes and the end
    mark (`coded_slots`); 'stlm': the real bytes only, as the released loss ignores pads."""
    if variant == "stlm":
        return bytes_BLT != BYTE_PAD
    return coded_slots(bytes_BLT)


def byte_losses(logits_BLTS: Array, target_bytes_BLT: Array, variant: str = "tinylm") -> Array:
    """[B, L] nats of each next token's bytes under the byte head.

    'tinylm' ignores pads except the first, the end-of-token mark: without it the head would
    never learn where a token ends, and the sum would not be a likelihood (its bits per byte
    would leave out the tokens' lengths). Slots are predicted independently given the hidden
    state, so this is a normalized code length over all strings of at most T symbols. 'stlm'
    ignores every pad, as the released code does: the nats of the bytes given their number.
    """
    logp_BLTS = jax.nn.log_softmax(logits_BLTS.astype(jnp.float32), axis=-1)
    nll_BLT = -jnp.take_along_axis(logp_BLTS, target_bytes_BLT[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(scored_slots(target_bytes_BLT, variant), nll_BLT, 0.0), axis=-1)


def token_log_probs(logits_BTS: Array, token_bytes: TokenBytes, variant: str = "tinylm") -> Array:
    """[B, V] log-probability of each canonical token's byte string (−inf for the others).

    Sampling from these (after the usual temperature / top-k / top-p) always yields a token,
    so the text comes from the tokenizer's decoding, never from raw sampled bytes.
    """
    table_VT = jnp.asarray(token_bytes.table_VT)
    logp_BTS = jax.nn.log_softmax(logits_BTS.astype(jnp.float32), axis=-1)
    slots_VT = jnp.broadcast_to(jnp.arange(table_VT.shape[1]), table_VT.shape)
    logp_BVT = logp_BTS[:, slots_VT, table_VT]
    scores_BV = jnp.sum(jnp.where(scored_slots(table_VT, variant), logp_BVT, 0.0), axis=-1)
    return jnp.where(jnp.asarray(token_bytes.canonical_V), scores_BV, -jnp.inf)


class ByteBlock(nn.Module):
    """Pre-norm bidirectional block over a token's byte slots, widening `d_in` -> `d_out`:
    x + attn(norm(x)) at `d_in`, then skip(x) + gelu-FFN(norm(x)) into `d_out`, where skip is
    the identity at equal widths and a linear map otherwise ('tinylm'); 'stlm' has no skip:
    the block's output is its FFN's."""

    config: ModelConfig
    d_in: int
    d_out: int
    out_axis: str  # logical axis of the output width: embed (d_model), byte_out or byte_embed

    @nn.compact
    def __call__(self, x_NTE: Array, keys_valid_NT: Array | None) -> Array:
        cfg, E = self.config, self.d_in
        published = cfg.byte_variant == "stlm"
        F = (STLM_FFN_RATIO if published else BYTE_FFN_RATIO) * E
        dtype = cfg.compute_dtype

        def kernel(
            name: str, shape: tuple[int, ...], axes: tuple[str, ...], n_in: int = 1
        ) -> Array:
            init = byte_init(cfg, axes, n_in)
            return self.param(name, init, shape, cfg.weight_dtype).astype(dtype)

        eps = STLM_NORM_EPS if published else cfg.norm_eps
        norm = lambda name: RMSNorm(eps, dtype, cfg.weight_dtype, name=name)
        h_NTE = norm("attn_norm")(x_NTE)
        qkv_axes = ("byte_embed", "byte_heads", "kv")
        q_NTGH, k_NTGH, v_NTGH = (
            project(h_NTE, kernel(name, (E, BYTE_HEADS, E // BYTE_HEADS), qkv_axes))
            for name in ("q_proj", "k_proj", "v_proj")
        )
        mask_N11T = None if keys_valid_NT is None else keys_valid_NT[:, None, None, :]
        out_NTGH = jax.nn.dot_product_attention(q_NTGH, k_NTGH, v_NTGH, mask=mask_N11T)
        o_axes = ("byte_heads", "kv", "byte_embed")
        o_kernel = kernel("o_proj", (BYTE_HEADS, E // BYTE_HEADS, E), o_axes, n_in=2)
        x_NTE = x_NTE + project(out_NTGH, o_kernel, n_contract=2)

        up = kernel("up_proj", (E, F), ("byte_embed", "byte_mlp"))
        # PyTorch's GELU, which the released code uses, is the exact (erf) one.
        h_NTF = nn.gelu(project(norm("mlp_norm")(x_NTE), up), approximate=not published)
        out_NTO = project(h_NTF, kernel("down_proj", (F, self.d_out), ("byte_mlp", self.out_axis)))
        if published:
            return out_NTO
        if self.d_in == self.d_out:
            return x_NTE + out_NTO
        skip_EO = kernel("skip_proj", (E, self.d_out), ("byte_embed", self.out_axis))
        return project(x_NTE, skip_EO) + out_NTO


def encoder_widths(config: ModelConfig) -> list[int]:
    """Byte encoder widths, input first: E, 2E, ..., 2E, D (`byte_encoder_layers` blocks)."""
    E = config.byte_embed_dim
    return [E] + [2 * E] * (config.byte_encoder_layers - 1) + [config.d_model]


def _slot_positions(module: nn.Module, cfg: ModelConfig) -> Array:
    """Learned positions of the T byte slots [T, E], in compute dtype."""
    positions_TE = module.param(
        "byte_pos",
        byte_init(cfg, ("byte_length", "byte_embed"), n_in=0),
        (cfg.max_token_bytes, cfg.byte_embed_dim),
        cfg.weight_dtype,
    )
    return positions_TE.astype(cfg.compute_dtype)


class ByteEmbedder(nn.Module):
    """Token bytes -> one d_model vector per token: embed + slot position, `byte_encoder_layers`
    blocks widening E -> 2E -> ... -> 2E -> D (STLM: 128 -> 256 -> 256 -> 256 -> d_model), then
    a mean over slots. 'tinylm': pads are masked as attention keys and left out of the mean
    (after a final norm), so what a pad slot holds never reaches the output. 'stlm': the plain
    mean of all T slots, pads included, as the released `ByteLevelEmbedder`. Either way each
    token depends on its own bytes only."""

    config: ModelConfig

    @nn.compact
    def __call__(self, bytes_BLT: Array, valid_BLT: Array) -> Array:
        cfg = self.config
        B, L, T = bytes_BLT.shape
        symbols_SE = self.param(
            "byte_embed",
            byte_init(cfg, ("byte_vocab", "byte_embed"), n_in=0),
            (BYTE_VOCAB, cfg.byte_embed_dim),
            cfg.weight_dtype,
        ).astype(cfg.compute_dtype)
        x_BLTE = jnp.take(symbols_SE, bytes_BLT, axis=0) + _slot_positions(self, cfg)
        x_NTE = x_BLTE.reshape(B * L, T, -1)
        published = cfg.byte_variant == "stlm"
        valid_NT = valid_BLT.reshape(B * L, T)
        widths, n = encoder_widths(cfg), cfg.byte_encoder_layers
        for i in range(n):
            out_axis = "embed" if i == n - 1 else "byte_out"
            x_NTE = ByteBlock(cfg, widths[i], widths[i + 1], out_axis, name=f"blocks_{i}")(
                x_NTE, None if published else valid_NT
            )
        if published:
            pooled_ND = jnp.mean(x_NTE.astype(jnp.float32), axis=1)
            return self._per_token(pooled_ND, B, L)
        x_NTD = RMSNorm(cfg.norm_eps, cfg.compute_dtype, cfg.weight_dtype, name="norm")(x_NTE)
        weights_NT1 = valid_NT[..., None].astype(jnp.float32)
        pooled_ND = jnp.sum(x_NTD.astype(jnp.float32) * weights_NT1, axis=1) / jnp.maximum(
            jnp.sum(weights_NT1, axis=1), 1.0
        )
        return self._per_token(pooled_ND, B, L)

    def _per_token(self, pooled_ND: Array, B: int, L: int) -> Array:
        """[B*L, D] float32 -> [B, L, D] in compute dtype, sharded as activations."""
        x_BLD = pooled_ND.reshape(B, L, -1).astype(self.config.compute_dtype)
        return nn.with_logical_constraint(x_BLD, ("act_batch", "act_length", "act_embed"))


class ByteDecoder(nn.Module):
    """Final hidden states -> logits over the next token's byte symbols [B, L, T, S]: a linear
    map to T x E, slot positions, `byte_decoder_layers` bidirectional blocks at E, a final norm
    ('tinylm' only), symbol logits. 'stlm' doubles the projection, as the released decoder's
    `x + pos_encoder(x)` does."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BLD: Array) -> Array:
        cfg = self.config
        B, L, _ = x_BLD.shape
        E, T = cfg.byte_embed_dim, cfg.max_token_bytes
        expand = self.param(
            "expand_proj",
            byte_init(cfg, ("embed", "byte_length", "byte_embed")),
            (cfg.d_model, T, E),
            cfg.weight_dtype,
        )
        published = cfg.byte_variant == "stlm"
        x_BLTE = project(x_BLD, expand.astype(cfg.compute_dtype))
        if published:
            x_BLTE = 2 * x_BLTE
        x_BLTE = x_BLTE + _slot_positions(self, cfg)
        x_NTE = x_BLTE.reshape(B * L, T, E)
        for i in range(cfg.byte_decoder_layers):
            x_NTE = ByteBlock(cfg, E, E, "byte_embed", name=f"blocks_{i}")(x_NTE, None)
        if not published:
            x_NTE = RMSNorm(cfg.norm_eps, cfg.compute_dtype, cfg.weight_dtype, name="norm")(x_NTE)
        head_ES = self.param(
            "byte_head",
            byte_init(cfg, ("byte_embed", "byte_vocab")),
            (E, BYTE_VOCAB),
            cfg.weight_dtype,
        )
        logits_NTS = project(x_NTE, head_ES.astype(cfg.compute_dtype))
        logits_BLTS = logits_NTS.reshape(B, L, T, BYTE_VOCAB).astype(jnp.float32)
        return nn.with_logical_constraint(logits_BLTS, ("act_batch", "act_length", None, None))
