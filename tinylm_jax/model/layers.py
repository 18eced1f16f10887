"""Transformer building blocks with logical axis names on every parameter and key activation.

Shape suffixes: B batch, L length, D d_model, N query heads, K key/value heads, H head dim,
F FFN width, V vocabulary.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.model.attention import causal_attention, document_mask, resolve_implementation

Array = jax.Array
KVCache = tuple[Array, Array]  # (k_BKSH, v_BKSH) of one layer; S is the cache length


def _normal(std: float, axes: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def project(x: Array, kernel: Array, n_contract: int = 1) -> Array:
    """Contracts x's last `n_contract` dims with kernel's first ones: [..., *in] -> [..., *out].

    Runs as one 2-D matmul over flattened tokens, [B*L, prod(in)] @ [prod(in), prod(out)]:
    XLA:CPU computed the weight gradient of a dot contracting over (batch, length) ~2.6x slower
    than the same 2-D dot (docs/performance.md). The reshapes only merge leading row-major dims,
    so they move no data and keep batch and head shardings intact.
    """
    in_shape, out_shape = kernel.shape[:n_contract], kernel.shape[n_contract:]
    lead_shape = x.shape[: x.ndim - n_contract]
    y = x.reshape(-1, math.prod(in_shape)) @ kernel.reshape(math.prod(in_shape), -1)
    return y.reshape(lead_shape + out_shape)


def output_init_std(config: ModelConfig) -> float:
    """Init std of projections that write into the residual stream (GPT-2 depth scaling)."""
    if config.scale_init_by_depth:
        return config.init_std / (2 * config.n_layers) ** 0.5
    return config.init_std


class RMSNorm(nn.Module):
    eps: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, x_BLD: Array) -> Array:
        # self.param returns the unboxed array; flax types it as the LogicallyPartitioned box.
        scale_D: Array = self.param(  # type: ignore[assignment]
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
            (x_BLD.shape[-1],),
            self.param_dtype,
        )
        x32 = x_BLD.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * scale_D.astype(jnp.float32)).astype(self.dtype)


def rotary(x_BLNH: Array, positions_BL: Array, theta: float) -> Array:
    """Rotary embedding in the half-split layout used by Hugging Face Llama (`rotate_half`)."""
    head_dim = x_BLNH.shape[-1]
    inv_freq = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles_BLh = positions_BL.astype(jnp.float32)[..., None] * inv_freq
    cos = jnp.cos(angles_BLh)[:, :, None, :]
    sin = jnp.sin(angles_BLh)[:, :, None, :]
    x1, x2 = jnp.split(x_BLNH.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BLNH.dtype)


def decode_mask(segment_ids_BL: Array | None, kv_valid_BS: Array | None) -> Array | None:
    """[B, 1, L, S] mask of a decoding call (beside the cache's causal mask), or None: same
    document (when segment ids are given) and key slots marked valid (e.g. not left padding)."""
    mask = None if segment_ids_BL is None else document_mask(segment_ids_BL)
    if kv_valid_BS is not None:
        valid_B11S = kv_valid_BS[:, None, None, :]
        mask = valid_B11S if mask is None else jnp.logical_and(mask, valid_B11S)
    return mask


def write_cache(
    cache: Array, new_BLKH: Array, cache_index: Array, layer: int | Array | None
) -> tuple[Array, Array]:
    """(the cache with `new_BLKH` written at `cache_index`, this layer's view [B, K, S, H]).

    `layer=None`: `cache` is one layer's [B, K, S, H]. Otherwise it is the stacked
    [n_layers, B, K, S, H] cache and the slot is written into it directly: carrying the stack
    through the layers lets XLA update it in place, where writing per-layer copies and
    re-stacking them rewrote the whole cache at every decoding step."""
    new_BKLH = new_BLKH.transpose(0, 2, 1, 3).astype(cache.dtype)
    if layer is None:
        cache = jax.lax.dynamic_update_slice_in_dim(cache, new_BKLH, cache_index, 2)
        return cache, cache
    zero = jnp.zeros((), jnp.asarray(cache_index).dtype)
    start = (jnp.asarray(layer, zero.dtype), zero, zero, jnp.asarray(cache_index), zero)
    cache = jax.lax.dynamic_update_slice(cache, new_BKLH[None], start)
    return cache, cache[layer]


def cached_attention(q_BLNH: Array, k_BKSH: Array, v_BKSH: Array, mask_B1LS: Array) -> Array:
    """Softmax attention of queries [B, L, N, H] over a head-major KV cache [B, K, S, H]
    (grouped: query head n reads KV head n // (N // K)), float32 scores and softmax."""
    B, L, N, H = q_BLNH.shape
    K = k_BKSH.shape[1]
    q_BKGLH = q_BLNH.reshape(B, L, K, N // K, H).transpose(0, 2, 3, 1, 4)
    scores = jnp.einsum("bkglh,bksh->bkgls", q_BKGLH, k_BKSH.astype(q_BLNH.dtype))
    scores = scores.astype(jnp.float32) / jnp.sqrt(jnp.float32(H))
    scores = jnp.where(mask_B1LS[:, :, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(q_BLNH.dtype)
    out_BKGLH = jnp.einsum("bkgls,bksh->bkglh", probs, v_BKSH.astype(q_BLNH.dtype))
    return out_BKGLH.transpose(0, 3, 1, 2, 4).reshape(B, L, N, H)


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        x_BLD: Array,
        positions_BL: Array,
        segment_ids_BL: Array | None,
        mask_B1LS: Array | None,
        kv_cache: KVCache | None = None,
        cache_index: Array | None = None,
        cache_layer: int | Array | None = None,
    ) -> tuple[Array, KVCache | None]:
        """Training (no `kv_cache`): causal attention within the documents of `segment_ids_BL`
        (None: one document per row). Decoding: attends over the cache's filled prefix,
        restricted further by `mask_B1LS` (see `decode_mask`). With `cache_layer`, `kv_cache`
        is the whole stacked cache [n_layers, B, K, S, H] and this layer's slot is written in
        place (see `write_cache`); without, it is this layer's [B, K, S, H]."""
        cfg = self.config
        N, K, H, D = cfg.n_heads, cfg.resolved_n_kv_heads, cfg.resolved_head_dim, cfg.d_model

        def proj(name: str, heads: int, axis: str) -> Array:
            kernel = self.param(
                name, _normal(cfg.init_std, ("embed", axis, "kv")), (D, heads, H), cfg.weight_dtype
            )
            return project(x_BLD, kernel.astype(cfg.compute_dtype))

        q_BLNH = rotary(proj("q_proj", N, "heads"), positions_BL, cfg.rope_theta)
        k_BLKH = rotary(proj("k_proj", K, "kv_heads"), positions_BL, cfg.rope_theta)
        v_BLKH = proj("v_proj", K, "kv_heads")
        q_BLNH = nn.with_logical_constraint(q_BLNH, ("act_batch", "act_length", "act_heads", None))

        if kv_cache is None:
            implementation = resolve_implementation(
                cfg.attention_impl, jax.default_backend(), cfg.compute_dtype, H
            )
            out_BLNH = causal_attention(
                q_BLNH, k_BLKH, v_BLKH, segment_ids_BL, implementation, cfg.attention_block_size
            )
        else:
            # Decoding: write this chunk at cache_index and attend over the filled prefix. The
            # cache is head-major ([B, K, S, H]), the layout the score and value matmuls read,
            # so a step writes its one slot in place instead of re-laying-out the whole cache.
            assert cache_index is not None  # decoding writes at a position
            k_cache, k_BKSH = write_cache(kv_cache[0], k_BLKH, cache_index, cache_layer)
            v_cache, v_BKSH = write_cache(kv_cache[1], v_BLKH, cache_index, cache_layer)
            S, L = k_BKSH.shape[2], x_BLD.shape[1]
            visible_LS = jnp.arange(S)[None, :] <= (cache_index + jnp.arange(L))[:, None]
            mask = visible_LS[None, None]
            if mask_B1LS is not None:
                mask = jnp.logical_and(mask, mask_B1LS)
            out_BLNH = cached_attention(q_BLNH, k_BKSH, v_BKSH, mask)
            kv_cache = (k_cache, v_cache)

        # Collected only when 'intermediates' is mutable (importance for inheritance).
        self.sow("intermediates", "heads_BLNH", out_BLNH)
        o_kernel = self.param(
            "o_proj",
            _normal(output_init_std(cfg), ("heads", "kv", "embed")),
            (N, H, D),
            cfg.weight_dtype,
        )
        out_BLD = project(out_BLNH, o_kernel.astype(cfg.compute_dtype), n_contract=2)
        return out_BLD, kv_cache


def mlp_kernels(module: nn.Module, cfg: ModelConfig) -> dict[str, Array]:
    """Declares the FFN kernels on `module` (inside its compact call), in compute dtype:
    up_proj/gate_proj [D, F] (gate only when gated), down_proj [F, D]."""
    D, F = cfg.d_model, cfg.resolved_ffn_dim
    shapes = {"up_proj": ((D, F), ("embed", "mlp"), cfg.init_std)}
    if cfg.gated:
        shapes["gate_proj"] = ((D, F), ("embed", "mlp"), cfg.init_std)
    shapes["down_proj"] = ((F, D), ("mlp", "embed"), output_init_std(cfg))
    return {
        name: module.param(name, _normal(std, axes), shape, cfg.weight_dtype).astype(
            cfg.compute_dtype
        )
        for name, (shape, axes, std) in shapes.items()
    }


def mlp_hidden(cfg: ModelConfig, x_BLD: Array, kernels: dict[str, Array]) -> Array:
    """[B, L, F] FFN activations before the down projection: gated (SwiGLU/GeGLU) or plain
    (GELU/ReLU)."""
    up_BLF = project(x_BLD, kernels["up_proj"])
    if cfg.gated:
        gate_BLF = project(x_BLD, kernels["gate_proj"])
        act = nn.silu if cfg.activation == "swiglu" else nn.gelu
        h_BLF = act(gate_BLF) * up_BLF
    else:
        h_BLF = nn.gelu(up_BLF) if cfg.activation == "gelu" else nn.relu(up_BLF)
    return nn.with_logical_constraint(h_BLF, ("act_batch", "act_length", "act_mlp"))


def mlp_forward(cfg: ModelConfig, x_BLD: Array, kernels: dict[str, Array]) -> Array:
    """The FFN of `mlp_kernels`' weights."""
    return project(mlp_hidden(cfg, x_BLD, kernels), kernels["down_proj"])


class Mlp(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BLD: Array) -> Array:
        kernels = mlp_kernels(self, self.config)
        h_BLF = mlp_hidden(self.config, x_BLD, kernels)
        # Recorded only when `intermediates` is mutable (activation importance, inheritance).
        self.sow("intermediates", "hidden_BLF", h_BLF)
        return project(h_BLF, kernels["down_proj"])


class MlpKernels(nn.Module):
    """The one FFN of `ffn_sharing='all'`: declared once, applied by every block."""

    config: ModelConfig

    @nn.compact
    def __call__(self) -> dict[str, Array]:
        return mlp_kernels(self, self.config)


class Block(nn.Module):
    """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        x_BLD: Array,
        positions_BL: Array,
        segment_ids_BL: Array | None,
        mask_B1LS: Array | None,
        kv_cache: KVCache | None = None,
        cache_index: Array | None = None,
        shared_mlp: dict[str, Array] | None = None,
        cache_layer: int | Array | None = None,
    ) -> tuple[Array, KVCache | None]:
        """`shared_mlp`: the FFN kernels of `ffn_sharing='all'`; None uses this block's own.
        `cache_layer`: see `Attention`."""
        cfg = self.config
        norm = lambda name: RMSNorm(cfg.norm_eps, cfg.compute_dtype, cfg.weight_dtype, name=name)
        attn_out, kv_cache = Attention(cfg, name="attn")(
            norm("attn_norm")(x_BLD),
            positions_BL,
            segment_ids_BL,
            mask_B1LS,
            kv_cache,
            cache_index,
            cache_layer,
        )
        x_BLD = x_BLD + attn_out
        h_BLD = norm("mlp_norm")(x_BLD)
        if shared_mlp is None:
            x_BLD = x_BLD + Mlp(cfg, name="mlp")(h_BLD)
        else:
            x_BLD = x_BLD + mlp_forward(cfg, h_BLD, shared_mlp)
        x_BLD = nn.with_logical_constraint(x_BLD, ("act_batch", "act_length", "act_embed"))
        return x_BLD, kv_cache


class CarriedCacheBlock(Block):
    """`Block` as the body of a layer scan when decoding (same parameters): the carry is
    (x_BLD, the stacked cache) and `layer` the scanned layer index, so every layer writes its
    slot into the one stacked cache, in place, as the unrolled blocks do; scanning the cache
    as per-layer slices instead would copy it out and re-stack it every step."""

    def __call__(  # type: ignore[override]
        self,
        carry: tuple[Array, KVCache],
        layer: Array,
        positions_BL: Array,
        segment_ids_BL: Array | None,
        mask_B1LS: Array | None,
        cache_index: Array,
        shared_mlp: dict[str, Array] | None,
    ) -> tuple[tuple[Array, KVCache], None]:
        x_BLD, kv_cache = carry
        x_BLD, new_cache = super().__call__(
            x_BLD, positions_BL, segment_ids_BL, mask_B1LS, kv_cache, cache_index, shared_mlp, layer
        )
        assert new_cache is not None  # decoding always returns the cache
        return (x_BLD, new_cache), None
