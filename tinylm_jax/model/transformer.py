"""The decoder-only Transformer: embedding, a stack of blocks (scanned or unrolled), head.

Parameter tree (unrolled; with `scan_layers` the blocks live under `layers` with a leading
layer axis instead of `layers_{i}`):
  token_embed [V, D]; layers_{i}/{attn_norm,mlp_norm}/scale [D];
  layers_{i}/attn/{q_proj [D, N, H], k_proj [D, K, H], v_proj [D, K, H], o_proj [N, H, D]};
  layers_{i}/mlp/{gate_proj [D, F], up_proj [D, F], down_proj [F, D]}; final_norm/scale [D];
  lm_head [D, V] (absent when embeddings are tied).
Super Tiny Language Models options (arXiv 2405.14159): `input_embedding='byte_pooled'` puts
`byte_embedder/...` in place of token_embed; `output_head='bytes'` puts `byte_decoder/...` in
place of lm_head; `ffn_sharing='all'` drops every block's `mlp` for one `shared_mlp/...`.
`byte_variant='stlm'` with a byte head has no final_norm (the released core model has none).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.byte_level import BYTE_PAD, ByteDecoder, ByteEmbedder, TokenBytes
from tinylm_jax.model.layers import (
    Block,
    CarriedCacheBlock,
    KVCache,
    MlpKernels,
    RMSNorm,
    _normal,
    decode_mask,
    project,
)

Array = jax.Array
# The stacked decoding cache [n_layers, B, S, K, H]: batch and kv heads shard like activations.
KV_CACHE_AXES = ("layers", "act_batch", "act_kv_heads", "act_length", None)


def _remat_policy(name: str):
    """None (save nothing: full recomputation) or a named jax.checkpoint_policies policy."""
    return None if name == "full" else getattr(jax.checkpoint_policies, name)


class Transformer(nn.Module):
    """`token_bytes` (needed when `config.uses_bytes`) is the run's token byte table."""

    config: ModelConfig
    token_bytes: TokenBytes | None = None

    @nn.compact
    def __call__(
        self,
        tokens_BL: Array,
        positions_BL: Array | None = None,
        segment_ids_BL: Array | None = None,
        kv_cache: KVCache | None = None,
        cache_index: Array | None = None,
        kv_valid_BS: Array | None = None,
        return_hidden: bool = False,
        reconstruct: bool = False,
    ) -> tuple[Array | tuple[Array, Array], KVCache | None]:
        """Returns float32 logits [B, L, V] (with `output_head='bytes'`, logits over the next
        token's byte symbols [B, L, T, S]) and, when decoding, the updated stacked KV cache.

        `kv_cache` is (k, v), each [n_layers, B, K, S, H], from `init_kv_cache`; tokens are
        written at `cache_index`. `kv_valid_BS` masks key slots out (e.g. left padding).

        `return_hidden`: return (x_BLD, head_DV) — the final-normed hidden states and the token
        head kernel (the embedding transposed when tied, in param dtype) — in place of the
        logits, so a loss can apply the head in chunks (`head_logits` gives the logits).

        `reconstruct` (needs `config.reconstructs_bytes`): return (logits, reconstruction
        logits [B, L, T, S]), the latter the byte head applied to each token's own pooled
        embedding, as STLM's `ByteModelShell` does for its auxiliary loss.
        """
        cfg = self.config
        if return_hidden and cfg.output_head == "bytes":
            raise ValueError("return_hidden needs a token head; output_head='bytes' has none")
        if reconstruct and not cfg.reconstructs_bytes:
            raise ValueError("reconstruct needs byte_variant='stlm' with both byte options")
        if positions_BL is None:
            start = 0 if cache_index is None else cache_index
            positions_BL = start + jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
        if not cfg.document_attention:
            segment_ids_BL = None
        if kv_cache is None and kv_valid_BS is not None:
            raise ValueError("kv_valid_BS masks cache slots; it needs a kv_cache")
        mask_B1LS = None if kv_cache is None else decode_mask(segment_ids_BL, kv_valid_BS)

        x_BLD, embedding_VD = self._embed(tokens_BL)
        embedded_BLD = x_BLD
        # One FFN for all layers: its kernels are declared here and broadcast into every block,
        # so the shared weights get the sum of all layers' gradients.
        shared_mlp = MlpKernels(cfg, name="shared_mlp")() if cfg.ffn_sharing == "all" else None
        x_BLD, kv_cache = self._blocks(
            x_BLD, positions_BL, segment_ids_BL, mask_B1LS, kv_cache, cache_index, shared_mlp
        )
        if kv_cache is not None:
            kv_cache = tuple(nn.with_logical_constraint(c, KV_CACHE_AXES) for c in kv_cache)

        if cfg.output_head == "bytes":
            return self._byte_head(x_BLD, embedded_BLD if reconstruct else None), kv_cache
        x_BLD = self._final_norm(x_BLD)
        if cfg.tie_embeddings:
            # ModelConfig rejects tying without a token embedding (byte-pooled inputs).
            assert embedding_VD is not None
            head_DV = embedding_VD.T
        else:
            head_DV = self.param(
                "lm_head",
                _normal(cfg.init_std, ("embed", "vocab")),
                (cfg.d_model, cfg.vocab_size),
                cfg.weight_dtype,
            )
        if return_hidden:
            return (x_BLD, head_DV), kv_cache
        return head_logits(x_BLD, head_DV), kv_cache

    def _final_norm(self, x_BLD: Array) -> Array:
        cfg = self.config
        return RMSNorm(cfg.norm_eps, cfg.compute_dtype, cfg.weight_dtype, name="final_norm")(x_BLD)

    def _byte_head(self, x_BLD: Array, embedded_BLD: Array | None) -> Array | tuple[Array, Array]:
        """The byte decoder's logits of the blocks' output, and with `embedded_BLD` also of
        the embedder's output (one decoder, so both share its parameters)."""
        decoder = ByteDecoder(self.config, name="byte_decoder")
        if self.config.byte_variant == "tinylm":
            x_BLD = self._final_norm(x_BLD)
        logits_BLTS = decoder(x_BLD)
        if embedded_BLD is None:
            return logits_BLTS
        return logits_BLTS, decoder(embedded_BLD)

    def _embed(self, tokens_BL: Array) -> tuple[Array, Array | None]:
        """(x_BLD in compute dtype, the token embedding [V, D], or None for byte-pooled
        inputs). Called from `__call__`, so its params are the model's own."""
        cfg = self.config
        if cfg.uses_bytes and self.token_bytes is None:
            raise ConfigError(
                f"ModelConfig.input_embedding={cfg.input_embedding!r} / output_head="
                f"{cfg.output_head!r} need the run's token byte table; build the model with "
                "Transformer(config, token_bytes=data.token_bytes.build_token_bytes(...))"
            )
        embedding_VD = None
        if cfg.input_embedding == "byte_pooled":
            assert self.token_bytes is not None  # checked above: byte-pooled inputs use bytes
            bytes_BLT = jnp.asarray(self.token_bytes.table_VT)[tokens_BL]
            x_BLD = ByteEmbedder(cfg, name="byte_embedder")(bytes_BLT, bytes_BLT != BYTE_PAD)
        else:
            embedding_VD = self.param(
                "token_embed",
                _normal(cfg.init_std, ("vocab", "embed")),
                (cfg.vocab_size, cfg.d_model),
                cfg.weight_dtype,
            )
            x_BLD = jnp.take(embedding_VD, tokens_BL, axis=0).astype(cfg.compute_dtype)
        x_BLD = nn.with_logical_constraint(x_BLD, ("act_batch", "act_length", "act_embed"))
        return x_BLD, embedding_VD

    def _blocks(
        self,
        x_BLD: Array,
        positions_BL: Array,
        segment_ids_BL: Array | None,
        mask_B1LS: Array | None,
        kv_cache: KVCache | None,
        cache_index: Array | None,
        shared_mlp: dict[str, Array] | None,
    ) -> tuple[Array, KVCache | None]:
        """The block stack, scanned (`layers`) or unrolled (`layers_{i}`), and the updated
        stacked KV cache (None when not decoding)."""
        cfg = self.config
        block = Block
        if cfg.remat != "none":
            block = nn.remat(
                Block, policy=_remat_policy(cfg.remat), prevent_cse=not cfg.scan_layers
            )
        if cfg.scan_layers and kv_cache is not None:
            assert cache_index is not None  # decoding writes at a position
            cache_stack = nn.scan(
                CarriedCacheBlock,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                length=cfg.n_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, name="layers")
            (x_BLD, kv_cache), _ = cache_stack(
                (x_BLD, kv_cache),
                jnp.arange(cfg.n_layers),
                positions_BL,
                segment_ids_BL,
                mask_B1LS,
                cache_index,
                shared_mlp,
            )
            return x_BLD, kv_cache
        if cfg.scan_layers:
            stack = nn.scan(
                block,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=nn.broadcast,
                length=cfg.n_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, name="layers")
            x_BLD, _ = stack(x_BLD, positions_BL, segment_ids_BL, mask_B1LS, None, None, shared_mlp)
            return x_BLD, None
        # Unrolled, every block writes its slot into the stacked cache it is handed (in place
        # under XLA), instead of returning a layer copy to be re-stacked.
        for i in range(cfg.n_layers):
            x_BLD, kv_cache = block(cfg, name=f"layers_{i}")(
                x_BLD,
                positions_BL,
                segment_ids_BL,
                mask_B1LS,
                kv_cache,
                cache_index,
                shared_mlp,
                None if kv_cache is None else i,
            )
        return x_BLD, kv_cache


def head_logits(x_BLD: Array, head_DV: Array) -> Array:
    """Float32 logits [B, L, V] of hidden states [B, L, D] under the token head [D, V], the
    matmul in the hidden states' (compute) dtype."""
    logits_BLV = project(x_BLD, head_DV.astype(x_BLD.dtype))
    logits_BLV = nn.with_logical_constraint(logits_BLV, ("act_batch", "act_length", "act_vocab"))
    return logits_BLV.astype(jnp.float32)


def init_kv_cache(
    config: ModelConfig, batch: int, length: int, dtype: jnp.dtype | None = None
) -> KVCache:
    """Zeroed stacked KV cache [n_layers, B, K, S, H] (head-major, as decoding reads it) for
    `Transformer` decoding."""
    shape = (config.n_layers, batch, config.resolved_n_kv_heads, length, config.resolved_head_dim)
    dtype = dtype or config.compute_dtype
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)
