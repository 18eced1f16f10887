"""Generation with a delta model of another tokenizer (Cross-model Control across vocabularies,
arXiv 2410.17599, Sec. 3.3; the public code's `chat_model_d`).

Each step the user model reads its new token, and the delta reads the same text in its own
tokenization (`data.cross_vocab.extend_delta_ids`: the mapped token of an exact match, else
the re-encoded text). Both keep a KV cache per row; the delta is re-run only from the first of
its tokens that changed, the cache before it kept (`CachedRows.feed`). The delta's next-token
logits go through the token map into the user vocabulary (zero shift for unmatched tokens).
The steps are jitted; the loop between them runs on the host, where the text is re-encoded.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.data.cross_vocab import (
    CrossVocab,
    extend_delta_ids,
    first_change,
    prompt_delta_ids,
)
from tinylm_jax.engine.combined import combined_logits
from tinylm_jax.eval.generate import check_length, sample_logits
from tinylm_jax.eval.generate_delta import check_token_heads
from tinylm_jax.model.transformer import KVCache, Transformer, init_kv_cache


@functools.partial(jax.jit, static_argnames=("model",))
def _extend(
    model: Transformer,
    params: dict,
    cache: KVCache,
    tokens_BT: jax.Array,
    start_B: jax.Array,
    last_B: jax.Array,
) -> tuple[jax.Array, KVCache]:
    """Writes row r's chunk `tokens_BT[r]` at cache slots `start_B[r]` onwards (positions
    too) and returns the logits after its token `last_B[r]` [B, V] and the cache. Slots past a
    row's last real token get padding, which the causal mask hides until it is overwritten."""

    def one_row(tokens_T, cache_row, start):
        cache_1 = tuple(c[:, None] for c in cache_row)  # [n_layers, 1, K, S, H]
        logits, cache_1 = model.apply(
            {"params": params}, tokens_T[None], kv_cache=cache_1, cache_index=start
        )
        return logits[0], tuple(c[:, 0] for c in cache_1)

    logits_BTV, cache = jax.vmap(one_row, in_axes=(0, 1, 0), out_axes=(0, 1))(
        tokens_BT, cache, start_B
    )
    return jnp.take_along_axis(logits_BTV, last_B[:, None, None], axis=1)[:, 0], cache


@functools.partial(jax.jit, static_argnames=("config", "normalization"))
def _next_tokens(
    user_BV: jax.Array,
    delta_BW: jax.Array,
    map_V: jax.Array,
    rng: jax.Array,
    config: SamplingConfig,
    normalization: str,
    alpha: jax.Array,
) -> jax.Array:
    """Next user tokens [B] from the last logits of both models, the delta's through the map."""
    logits_BV = combined_logits(user_BV, delta_BW, normalization, alpha, map_V)
    return sample_logits(logits_BV, rng, config)


# The delta's chunks are padded to a power of two of at least 8 tokens, so that one compiled
# shape serves a step whether it appends a token or re-runs a few (the user's: one token).
DELTA_CHUNK = 8


class CachedRows:
    """One model's KV cache over B rows of token ids that each grow, or change at the end,
    independently: `feed` runs the model only over what changed since the last call."""

    def __init__(
        self, model: Transformer, params: dict, rows: int, slots: int, pad_id: int, chunk: int
    ):
        self.model, self.params, self.pad_id = model, jax.device_put(params), pad_id
        self.chunk = chunk  # the least width a step's chunk is padded to
        self.fed: list[list[int]] = [[] for _ in range(rows)]
        self.cache = init_kv_cache(model.config, rows, 1 << (slots - 1).bit_length())

    def feed(self, sequences: list[list[int]]) -> jax.Array:
        """Logits [B, V] after the last token of each row of `sequences` (an unchanged row
        re-feeds its last token)."""
        starts = []
        for old, new in zip(self.fed, sequences, strict=True):
            starts.append(min(first_change(old, new), len(new) - 1))
        chunks = [new[s:] for s, new in zip(starts, sequences, strict=True)]
        width = max(self.chunk, 1 << (max(len(c) for c in chunks) - 1).bit_length())
        tokens_BT = np.full((len(chunks), width), self.pad_id, np.int32)
        for r, chunk in enumerate(chunks):
            tokens_BT[r, : len(chunk)] = chunk
        self._hold(max(starts) + width)
        logits_BV, self.cache = _extend(
            self.model,
            self.params,
            self.cache,
            jnp.asarray(tokens_BT),
            jnp.asarray(starts, jnp.int32),
            jnp.asarray([len(c) - 1 for c in chunks], jnp.int32),
        )
        self.fed = [list(s) for s in sequences]
        return logits_BV

    def _hold(self, slots: int) -> None:
        """Grows the cache (doubling) to at least `slots` slots: a write past its end would be
        clamped onto earlier slots."""
        size = self.cache[0].shape[3]
        if slots > size:
            grown = 1 << (slots - 1).bit_length()
            pad = [(0, 0)] * 3 + [(0, grown - size), (0, 0)]
            self.cache = (jnp.pad(self.cache[0], pad), jnp.pad(self.cache[1], pad))


def generate_across(
    models: tuple[Transformer, Transformer],
    params: tuple[dict, dict],
    prompts: list[str],
    cross: CrossVocab,
    config: SamplingConfig,
    normalization: str,
    alpha: float,
) -> list[list[int]]:
    """Completion ids (user vocabulary) per prompt under the combined logits, cut at (and
    excluding) the user's EOS; sampling draws as `generate` does (step i: `fold_in(seed, i)`)."""
    user, delta = cross.user, cross.delta
    user_ids = [[user.bos_id, *user.encode(p)] for p in prompts]
    check_token_heads(models)
    longest = max(len(ids) for ids in user_ids)
    check_length(models[0], longest, config, "model")
    S = longest + config.max_new_tokens
    delta_ids = [prompt_delta_ids(cross, p) for p in prompts]
    texts = [p.encode("utf-8") for p in prompts]
    # The user's rows need prompt + new tokens; the delta's usually at most twice as many new
    # tokens (its cache doubles when a re-encoding needs more).
    delta_slots = max(len(ids) for ids in delta_ids) + 2 * config.max_new_tokens + DELTA_CHUNK
    streams = [
        CachedRows(models[0], params[0], len(prompts), S, user.pad_id, chunk=1),
        CachedRows(models[1], params[1], len(prompts), delta_slots, delta.pad_id, DELTA_CHUNK),
    ]
    map_V = jnp.asarray(cross.map_for(models[0].config.vocab_size))
    rng = jax.random.key(config.seed)
    static = SamplingConfig(config.max_new_tokens, config.temperature, config.top_k, config.top_p)
    completions: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for step in range(config.max_new_tokens):
        logits = [s.feed(ids) for s, ids in zip(streams, (user_ids, delta_ids), strict=True)]
        rng_step = jax.random.fold_in(rng, step)
        tokens = np.asarray(_next_tokens(*logits, map_V, rng_step, static, normalization, alpha))
        for r, token in enumerate(tokens.tolist()):
            if done[r]:
                continue
            if token == user.eos_id:
                done[r] = True
                continue
            completions[r].append(token)
            user_ids[r].append(token)
            texts[r] += cross.piece(token)[1]
            delta_ids[r] = extend_delta_ids(cross, delta_ids[r], token, texts[r])
        if all(done):
            break
    return completions
