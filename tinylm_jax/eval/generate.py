"""Text generation with a KV cache: batched prompts, greedy / temperature / top-k / top-p.

A byte head (`ModelConfig.output_head='bytes'`) predicts the next token's bytes; each step
scores every token of the vocabulary by the log-probability of its byte string
(`byte_level.token_log_probs`) and samples a token from those scores as from logits. So
generation always emits tokenizer ids, whose text is the tokenizer's decoding: bytes that are
not valid UTF-8 (e.g. a lone byte-fallback piece) decode to U+FFFD, as SentencePiece does.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.byte_level import token_log_probs
from tinylm_jax.model.transformer import Transformer, init_kv_cache


def sample_logits(logits_BV: jax.Array, rng: jax.Array, config: SamplingConfig) -> jax.Array:
    """Next token ids [B] from the last position's logits."""
    if config.temperature == 0:
        return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
    logits_BV = logits_BV / config.temperature
    if config.top_k and config.top_k < logits_BV.shape[-1]:
        kth = jax.lax.top_k(logits_BV, config.top_k)[0][:, -1:]
        logits_BV = jnp.where(logits_BV < kth, -jnp.inf, logits_BV)
    if config.top_p < 1.0:
        sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
        cumulative = jnp.cumsum(jax.nn.softmax(sorted_BV, axis=-1), axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        cutoff_index = jnp.sum(cumulative < config.top_p, axis=-1, keepdims=True)
        cutoff_index = jnp.minimum(cutoff_index, logits_BV.shape[-1] - 1)  # rounding of the sum
        cutoff = jnp.take_along_axis(sorted_BV, cutoff_index, axis=-1)
        logits_BV = jnp.where(logits_BV < cutoff, -jnp.inf, logits_BV)
    return jax.random.categorical(rng, logits_BV, axis=-1).astype(jnp.int32)


def next_token_logits(model: Transformer, outputs: jax.Array) -> jax.Array:
    """[B, V] logits of the token after the last position, from the model's outputs."""
    if model.config.output_head == "bytes":
        assert model.token_bytes is not None  # a byte head is built with its byte table
        return token_log_probs(outputs[:, -1], model.token_bytes, model.config.byte_variant)
    return outputs[:, -1]


def prefill(
    model: Transformer, params: dict, tokens_BP: jax.Array, pad_B: jax.Array, length: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(logits of the left-padded prompts `tokens_BP`, a KV cache of `length` slots holding
    them): the first half of generation, which `tinylm bench --mode=decode` times alone."""
    B, P = tokens_BP.shape
    valid_BS = jnp.arange(length)[None, :] >= pad_B[:, None]
    positions_BP = jnp.maximum(jnp.arange(P)[None, :] - pad_B[:, None], 0)
    cache = init_kv_cache(model.config, B, length)
    # With a kv_cache the model returns (logits, cache); apply() is typed for the general case.
    return model.apply(  # type: ignore[return-value]
        {"params": params},
        tokens_BP,
        positions_BP,
        kv_cache=cache,
        cache_index=jnp.int32(0),
        kv_valid_BS=valid_BS,
    )


@functools.partial(jax.jit, static_argnames=("model", "config", "eos_id"))
def generate_ids(
    model: Transformer,
    params: dict,
    tokens_BP: jax.Array,
    pad_B: jax.Array,
    seed: jax.Array,
    config: SamplingConfig,
    eos_id: int,
) -> jax.Array:
    """Completion ids [B, max_new_tokens] of left-padded prompts (EOS-filled after each row's
    first EOS; an `eos_id` outside the vocabulary, e.g. -1, generates all of them).

    `config.seed` is ignored (it is 0 here so that seeds share one compilation); `seed` is used.
    """
    B, P = tokens_BP.shape
    S = P + config.max_new_tokens
    valid_BS = jnp.arange(S)[None, :] >= pad_B[:, None]
    logits, cache = prefill(model, params, tokens_BP, pad_B, S)
    rng = jax.random.key(seed)
    first = sample_logits(next_token_logits(model, logits), jax.random.fold_in(rng, 0), config)
    out_BN = jnp.zeros((B, config.max_new_tokens), jnp.int32).at[:, 0].set(first)

    def cond(carry):
        i, _, _, done_B = carry
        return jnp.logical_and(i < config.max_new_tokens, ~jnp.all(done_B))

    def body(carry):
        i, out_BN, cache, done_B = carry
        last_B1 = out_BN[:, i - 1][:, None]
        positions_B1 = (P + i - 1 - pad_B)[:, None]
        logits, cache = model.apply(  # type: ignore[misc, assignment]
            {"params": params},
            last_B1,
            positions_B1,
            kv_cache=cache,
            cache_index=P + i - 1,
            kv_valid_BS=valid_BS,
        )
        token_B = sample_logits(
            next_token_logits(model, logits), jax.random.fold_in(rng, i), config
        )
        token_B = jnp.where(done_B, eos_id, token_B)
        return i + 1, out_BN.at[:, i].set(token_B), cache, done_B | (token_B == eos_id)

    _, out_BN, _, _ = jax.lax.while_loop(cond, body, (1, out_BN, cache, first == eos_id))
    return out_BN


def generate(
    model: Transformer,
    params: dict,
    prompts: list[list[int]],
    config: SamplingConfig,
    eos_id: int,
    pad_id: int = 0,
    prompt_width: int | None = None,
) -> list[list[int]]:
    """Completion ids per prompt, cut at (and excluding) the first EOS.

    Prompts are left-padded to the longest, or to `prompt_width` when that is longer (a caller
    bucketing widths compiles a few shapes instead of one per prompt length)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError("every prompt needs at least one token (encode with a BOS token)")
    longest = max([len(p) for p in prompts] + [prompt_width or 0])
    check_length(model, longest, config)
    tokens, pads = left_pad(prompts, longest, pad_id)
    static = dataclasses.replace(config, seed=0)
    out = generate_ids(model, params, tokens, pads, config.seed, static, eos_id)
    return cut_at_eos(np.asarray(out), eos_id)


def check_length(model: Transformer, longest: int, config: SamplingConfig, name: str = "") -> None:
    """Fails unless `longest` prompt tokens plus the new tokens fit `model`'s max_seq_len
    (`name`: which model, in the message)."""
    if longest + config.max_new_tokens > model.config.max_seq_len:
        whose = f"the {name}'s " if name else ""
        raise ConfigError(
            f"prompt ({longest} tokens) + --max_new_tokens ({config.max_new_tokens}) "
            f"exceeds {whose}ModelConfig.max_seq_len={model.config.max_seq_len}"
        )


def left_pad(prompts: list[list[int]], width: int, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Prompts right-aligned in a [B, width] int32 array (pads on the left), and each row's
    pad count [B]: decoding then writes every row's next token at the same position."""
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    pads = np.array([width - len(p) for p in prompts], np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, pads[row] :] = prompt
    return jnp.asarray(tokens), jnp.asarray(pads)


def cut_at_eos(ids_BT: np.ndarray, eos_id: int) -> list[list[int]]:
    """Each row's ids up to (and excluding) its first EOS."""
    return [row[: row.index(eos_id)] if eos_id in row else row for row in ids_BT.tolist()]
