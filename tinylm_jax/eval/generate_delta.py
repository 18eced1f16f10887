"""Generation with a delta model (Cross-model Control, arXiv 2410.17599, Sec. 3): at every
step the next-token logits are the combined logits of the model and the delta, each model
keeping its own KV cache, in one jitted loop. Both read the same token ids (the delta shares
the model's tokenizer)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.engine.combined import combined_logits
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.generate import check_length, cut_at_eos, left_pad, sample_logits
from tinylm_jax.model.transformer import Transformer, init_kv_cache


@functools.partial(
    jax.jit, static_argnames=("models", "config", "eos_id", "normalization", "alpha")
)
def _generate_combined(
    models: tuple[Transformer, Transformer],
    params: tuple[dict, dict],
    tokens_BP: jax.Array,
    pad_B: jax.Array,
    seed: jax.Array,
    config: SamplingConfig,
    eos_id: int,
    normalization: str,
    alpha: float,
) -> jax.Array:
    """Completion ids [B, max_new_tokens] (EOS-filled after each row's first EOS)."""
    B, P = tokens_BP.shape
    S = P + config.max_new_tokens
    valid_BS = jnp.arange(S)[None, :] >= pad_B[:, None]

    def forward(caches, tokens_BT, positions_BT, index):
        """Last-position combined logits [B, V] and both models' updated caches."""
        outs = [
            model.apply(
                {"params": p},
                tokens_BT,
                positions_BT,
                kv_cache=cache,
                cache_index=index,
                kv_valid_BS=valid_BS,
            )
            for model, p, cache in zip(models, params, caches, strict=True)
        ]
        (base, base_cache), (delta, delta_cache) = outs  # type: ignore[misc]
        logits_BV = combined_logits(base[:, -1], delta[:, -1], normalization, alpha)
        return logits_BV, (base_cache, delta_cache)

    caches = tuple(init_kv_cache(m.config, B, S) for m in models)
    positions_BP = jnp.maximum(jnp.arange(P)[None, :] - pad_B[:, None], 0)
    logits_BV, caches = forward(caches, tokens_BP, positions_BP, jnp.int32(0))
    rng = jax.random.key(seed)
    first = sample_logits(logits_BV, jax.random.fold_in(rng, 0), config)
    out_BN = jnp.zeros((B, config.max_new_tokens), jnp.int32).at[:, 0].set(first)

    def cond(carry):
        i, _, _, done_B = carry
        return jnp.logical_and(i < config.max_new_tokens, ~jnp.all(done_B))

    def body(carry):
        i, out_BN, caches, done_B = carry
        positions_B1 = (P + i - 1 - pad_B)[:, None]
        logits_BV, caches = forward(caches, out_BN[:, i - 1][:, None], positions_B1, P + i - 1)
        token_B = sample_logits(logits_BV, jax.random.fold_in(rng, i), config)
        token_B = jnp.where(done_B, eos_id, token_B)
        return i + 1, out_BN.at[:, i].set(token_B), caches, done_B | (token_B == eos_id)

    _, out_BN, _, _ = jax.lax.while_loop(cond, body, (1, out_BN, caches, first == eos_id))
    return out_BN


def check_token_heads(models: tuple[Transformer, Transformer]) -> None:
    """Combined logits need both models' token heads."""
    for name, model in zip(("model", "delta"), models, strict=True):
        if model.config.output_head != "tokens":
            raise ConfigError(f"--delta needs token heads; the {name} has a byte head")


def generate_with_delta(
    models: tuple[Transformer, Transformer],
    params: tuple[dict, dict],
    prompts: list[list[int]],
    config: SamplingConfig,
    eos_id: int,
    normalization: str,
    alpha: float,
    pad_id: int = 0,
) -> list[list[int]]:
    """Completion ids per prompt under the combined logits, cut at (and excluding) EOS."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt needs at least one token (encode with a BOS token)")
    longest = max(len(p) for p in prompts)
    check_token_heads(models)
    for name, model in zip(("model", "delta"), models, strict=True):
        check_length(model, longest, config, name)
    tokens, pads = left_pad(prompts, longest, pad_id)
    static = dataclasses.replace(config, seed=0)
    out = np.asarray(
        _generate_combined(
            models,
            params,
            tokens,
            pads,
            config.seed,
            static,
            eos_id,
            normalization,
            float(alpha),
        )
    )
    return cut_at_eos(out, eos_id)
