"""Decoding benchmark (`tinylm bench --mode=decode`): prefill latency and greedy decode
tokens/s through `tinylm sample`'s own jitted KV-cache path, and how much of the machine's
memory bandwidth the decode steps use.

Each decode step reads every weight once (the token embedding only for the B rows it looks
up, unless tied to the head) and the whole KV cache buffer (attention runs over all S slots,
masked), so at small batches decoding is bound by memory bandwidth, not FLOPs; the
utilisation is those bytes per step over the step time, against a copy bandwidth measured
here (`measure_bandwidth`).
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.generate import generate_ids, prefill
from tinylm_jax.model.transformer import Transformer, init_kv_cache


@dataclasses.dataclass(frozen=True)
class DecodeResult:
    """One decode benchmark; `as_dict` is the JSON line `tinylm bench --mode=decode` prints.

    `decode_tokens_per_second` counts new tokens across the batch after the first (which the
    prefill yields), per second of the generation loop, compiled beforehand; medians of
    `repeats` runs.
    """

    decode_tokens_per_second: float
    prefill_seconds: float
    prefill_tokens_per_second: float
    decode_step_seconds: float
    generate_seconds: float
    compile_s: float
    batch_size: int
    prompt_len: int
    new_tokens: int
    repeats: int
    params: int
    weight_bytes_per_step: int
    kv_cache_bytes_per_step: int
    xla_bytes_per_step: int
    memory_bandwidth_bytes_per_second: float
    bandwidth_utilisation: float
    compute_dtype: str
    platform: str
    device_kind: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def measure_bandwidth(megabytes: int = 256, trials: int = 5) -> float:
    """Bytes/s of a jitted elementwise pass over a `megabytes` float32 array (read + write):
    the machine's achievable memory bandwidth, the ceiling of bandwidth-bound decoding."""
    x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
    # Donated, so the output reuses the input's pages: fresh buffers would time page faults.
    scale = jax.jit(lambda a: a * 1.0001, donate_argnums=0)
    x = jax.block_until_ready(scale(x))
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        x = jax.block_until_ready(scale(x))
        best = min(best, time.perf_counter() - start)
    return 2 * x.nbytes / best


def bytes_per_step(config: ModelConfig, params: dict, batch: int, length: int) -> tuple[int, int]:
    """(weight bytes, KV cache bytes) one decode step reads at batch `batch`, cache `length`."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    itemsize = jnp.dtype(config.weight_dtype).itemsize
    weights = 0
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        size = int(np.prod(leaf.shape))
        if "token_embed" in name and not config.tie_embeddings:
            size = batch * config.d_model  # only the looked-up rows
        weights += size * itemsize
    kv = 2 * config.n_layers * batch * length * config.resolved_n_kv_heads
    kv *= config.resolved_head_dim * jnp.dtype(config.compute_dtype).itemsize
    return weights, kv


def xla_bytes_per_step(model: Transformer, params: dict, batch: int, length: int) -> int:
    """The bytes XLA's cost analysis counts for one compiled decode step (one token per row
    against a `length`-slot cache): beside `bytes_per_step`'s floor it shows the traffic the
    step adds, e.g. copies of the cache."""
    cfg = model.config

    def step(params: dict, cache: tuple[jax.Array, jax.Array], tokens_B1: jax.Array):
        return model.apply(
            {"params": params}, tokens_B1, kv_cache=cache, cache_index=jnp.int32(length - 1)
        )

    cache = init_kv_cache(cfg, batch, length)
    tokens_B1 = jnp.zeros((batch, 1), jnp.int32)
    compiled = jax.jit(step, donate_argnums=1).lower(params, cache, tokens_B1).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax returned one dict per computation
        analysis = analysis[0]
    if not analysis:
        raise RuntimeError("XLA gave no cost analysis for the decode step")
    return int(analysis["bytes accessed"])


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_bench(
    model: Transformer,
    params: dict,
    batch_size: int = 1,
    prompt_len: int = 128,
    new_tokens: int = 128,
    repeats: int = 3,
    seed: int = 0,
) -> DecodeResult:
    """Times prefill of `batch_size` random prompts of `prompt_len` tokens, and greedy
    generation of `new_tokens` more, with `params` (random or a workdir's)."""
    cfg = model.config
    if min(batch_size, prompt_len, repeats) < 1 or new_tokens < 2:
        raise ConfigError(
            "tinylm bench --mode=decode needs --batch_size, --prompt_len, --repeats >= 1 and "
            f"--new_tokens >= 2; got {batch_size}, {prompt_len}, {repeats}, {new_tokens}"
        )
    length = prompt_len + new_tokens
    if length > cfg.max_seq_len:
        raise ConfigError(
            f"--prompt_len ({prompt_len}) + --new_tokens ({new_tokens}) exceeds "
            f"ModelConfig.max_seq_len={cfg.max_seq_len}"
        )
    rng = np.random.default_rng(seed)
    tokens_BP = jnp.asarray(rng.integers(0, cfg.vocab_size, (batch_size, prompt_len)), jnp.int32)
    pad_B = jnp.zeros((batch_size,), jnp.int32)
    greedy = SamplingConfig(max_new_tokens=new_tokens, temperature=0.0, seed=0)
    # eos_id -1 never matches a token, so every run generates all `new_tokens`.
    generate = functools.partial(
        generate_ids, model, params, tokens_BP, pad_B, jnp.int32(0), greedy, -1
    )
    prefill_jit = jax.jit(prefill, static_argnames=("model", "length"))
    first = functools.partial(prefill_jit, model, params, tokens_BP, pad_B, length=length)

    start = time.perf_counter()
    jax.block_until_ready((first(), generate()))  # compiles both (or loads them from the cache)
    compile_s = time.perf_counter() - start
    prefill_s = _median_seconds(first, repeats)
    generate_s = _median_seconds(generate, repeats)
    decode_s = max(generate_s - prefill_s, 1e-9)
    steps = new_tokens - 1
    weight_bytes, kv_bytes = bytes_per_step(cfg, params, batch_size, length)
    bandwidth = measure_bandwidth()
    device = jax.devices()[0]
    return DecodeResult(
        decode_tokens_per_second=batch_size * steps / decode_s,
        prefill_seconds=prefill_s,
        prefill_tokens_per_second=batch_size * prompt_len / prefill_s,
        decode_step_seconds=decode_s / steps,
        generate_seconds=generate_s,
        compile_s=compile_s,
        batch_size=batch_size,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        repeats=repeats,
        params=sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params)),
        weight_bytes_per_step=weight_bytes,
        kv_cache_bytes_per_step=kv_bytes,
        xla_bytes_per_step=xla_bytes_per_step(model, params, batch_size, length),
        memory_bandwidth_bytes_per_second=bandwidth,
        bandwidth_utilisation=(weight_bytes + kv_bytes) * steps / decode_s / bandwidth,
        compute_dtype=cfg.resolved_dtype,
        platform=device.platform,
        device_kind=device.device_kind,
    )


def decode_summary(result: DecodeResult) -> str:
    """The human-readable lines printed before the JSON line."""
    mib = 2**20
    return (
        f"{result.params:,} params ({result.compute_dtype}) | batch {result.batch_size} | "
        f"prompt {result.prompt_len} + {result.new_tokens} new tokens | {result.platform} "
        f"({result.device_kind})\n"
        f"compile {result.compile_s:.2f}s | prefill {1e3 * result.prefill_seconds:.1f} ms "
        f"({result.prefill_tokens_per_second:,.0f} tokens/s) | decode "
        f"{result.decode_tokens_per_second:,.1f} tokens/s "
        f"({1e3 * result.decode_step_seconds:.2f} ms/step)\n"
        f"per step: weights {result.weight_bytes_per_step / mib:,.1f} MiB + KV cache "
        f"{result.kv_cache_bytes_per_step / mib:,.1f} MiB (XLA counts "
        f"{result.xla_bytes_per_step / mib:,.1f} MiB); bandwidth utilisation "
        f"{100 * result.bandwidth_utilisation:.1f}% of "
        f"{result.memory_bandwidth_bytes_per_second / 1e9:.1f} GB/s measured"
    )
