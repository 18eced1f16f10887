"""Training-step benchmark: compiled-step throughput, MFU, step-time percentiles, memory.

The step is the run's own jitted `train_step` (from `build_run`), fed one synthetic batch of
random tokens that is already on the devices, so neither data loading nor host→device copies
are in the step figure; compilation is timed separately (`lower(...).compile()`).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time

import jax
import numpy as np

from tinylm_jax.config.run import RunConfig
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import TrainState, init_state
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.byte_level import blank_token_bytes
from tinylm_jax.model.counting import flops_per_token
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.train.metrics import mfu, peak_flops_per_device


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One benchmark of the configured run; `as_dict` is the JSON line `tinylm bench` prints."""

    tokens_per_second: float
    mfu: float
    step_time_s: float  # mean over the timed steps (= tokens per step / tokens_per_second)
    step_time_p50_s: float
    step_time_p90_s: float
    compile_s: float
    init_s: float
    peak_memory_bytes: int
    memory_source: str  # which measurement `peak_memory_bytes` is (see `peak_memory`)
    peak_rss_bytes: int
    compiled_memory: dict[str, int]
    steps: int
    warmup_steps: int
    batch_size: int
    seq_len: int
    tokens_per_step: int
    flops_per_token: float
    peak_flops_per_device: float
    num_devices: int
    mesh: dict[str, int]
    platform: str
    device_kind: str
    params: int
    final_loss: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _host_batch(run: Run, seed: int) -> dict[str, np.ndarray]:
    """A global batch of uniform random tokens, one document per row."""
    B, L = run.config.train.batch_size, run.config.train.seq_len
    rng = np.random.default_rng(seed)
    tokens_BL1 = rng.integers(0, run.config.model.vocab_size, (B, L + 1), dtype=np.int32)
    return {
        "inputs": tokens_BL1[:, :-1],
        "targets": tokens_BL1[:, 1:],
        "segment_ids": np.ones((B, L), np.int32),
        "positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)),
        "weights": np.ones((B, L), np.float32),
    }


def synthetic_batch(run: Run, seed: int = 0) -> dict[str, jax.Array]:
    """`_host_batch` laid out on the mesh."""
    sharding = rules_lib.batch_sharding(run.mesh, run.rules)
    host = _host_batch(run, seed)
    return {k: jax.device_put(np.ascontiguousarray(v), sharding) for k, v in host.items()}


def abstract_step_inputs(run: Run) -> tuple[TrainState, dict[str, jax.ShapeDtypeStruct]]:
    """The train step's (state, batch) as shapes, dtypes and the run's shardings: enough to
    lower and compile the step without allocating anything on the devices."""
    state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), run.abstract, run.shardings
    )
    sharding = rules_lib.batch_sharding(run.mesh, run.rules)
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
        for k, v in _host_batch(run, 0).items()
    }
    return state, batch


def compiled_memory(compiled) -> dict[str, int]:
    """Sizes XLA planned for the executable (per device); empty where the backend has none."""
    try:
        analysis = compiled.memory_analysis()
    except (NotImplementedError, AttributeError, RuntimeError):
        return {}
    if analysis is None:
        return {}
    fields = ("argument", "output", "alias", "temp", "generated_code")
    sizes = {f"{f}_bytes": int(getattr(analysis, f"{f}_size_in_bytes", 0)) for f in fields}
    # Donated state aliases the output, so it is live once, not twice.
    sizes["total_bytes"] = (
        sizes["argument_bytes"]
        + sizes["output_bytes"]
        - sizes["alias_bytes"]
        + sizes["temp_bytes"]
        + sizes["generated_code_bytes"]
    )
    return sizes


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_memory(compiled_sizes: dict[str, int]) -> tuple[int, str]:
    """(bytes, source): the allocator's peak on accelerators; XLA's plan for the step on CPU.

    CPU devices have no allocator statistics, so there the figure is the compiled step's
    memory analysis (arguments + outputs - donated aliases + temporaries, per device) times
    the local device count; the process's peak RSS is reported beside it.
    """
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s["peak_bytes_in_use"] for s in stats if s.get("peak_bytes_in_use") is not None]
    if peaks and len(peaks) == len(stats):
        return int(max(peaks)), "device_memory_stats.peak_bytes_in_use (max over devices)"
    if compiled_sizes:
        total = compiled_sizes["total_bytes"] * jax.local_device_count()
        return int(total), "compiled.memory_analysis (all local devices)"
    return peak_rss_bytes(), "process_peak_rss"


def _time_steps(step_fn, state, batch, steps: int):
    """Runs `steps` steps keeping one in flight; returns (state, completion times, last loss).

    Waiting on step i-1's metrics after dispatching step i keeps the device busy while the
    host records time, so per-step intervals are device time, not dispatch round trips.
    """
    times = [time.perf_counter()]
    pending = None
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
        if pending is not None:
            jax.block_until_ready(pending)
            times.append(time.perf_counter())
        pending = metrics
    if pending is None:
        raise ValueError(f"_time_steps runs at least one step, got steps={steps}")
    loss = float(jax.device_get(pending["loss"]))
    times.append(time.perf_counter())
    return state, np.asarray(times), loss


def _timed_steps(step_fn, state, batch, steps: int, profile, log_dir: str):
    """`_time_steps` over `steps` steps, tracing steps A+1..B of them when `profile` is (A, B);
    returns (state, per-step intervals, elapsed seconds, last loss)."""
    bounds = [0, *(profile or ()), steps]
    intervals, elapsed, loss = [], 0.0, float("nan")
    for i, (begin, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if end == begin:
            continue
        traced = profile is not None and i == 1
        if traced:
            jax.profiler.start_trace(log_dir)
        state, times, loss = _time_steps(step_fn, state, batch, end - begin)
        if traced:
            jax.profiler.stop_trace()
        intervals.append(np.diff(times))
        elapsed += times[-1] - times[0]
    return state, np.concatenate(intervals), elapsed, loss


def bench(
    config: RunConfig,
    steps: int = 20,
    warmup_steps: int = 2,
    seed: int = 0,
    profile: tuple[int, int] | None = None,
    profile_dir: str = "tensorboard",
) -> BenchResult:
    """Benchmarks the train step of `config` (model, train, mesh, optimizer); `profile` (A, B)
    traces timed steps A+1..B into `profile_dir` (their times then include the tracing)."""
    if steps < 1 or warmup_steps < 0:
        raise ConfigError(
            f"tinylm bench needs --steps >= 1 and --warmup_steps >= 0; got {steps}, {warmup_steps}"
        )
    if profile is not None and profile[1] > steps:
        raise ConfigError(
            f"--profile_steps={profile[0]}:{profile[1]} goes past the {steps} timed steps; "
            f"raise --steps to at least {profile[1]}"
        )
    # Synthetic batches need no tokenizer; a byte-level model's step costs the same whatever
    # its byte table holds, so a blank one of the right shape times it.
    run = build_run(config, blank_token_bytes(config.model) if config.model.uses_bytes else None)
    tc = config.train
    with run_context(run):
        start = time.perf_counter()
        state = init_state(run.init_fn, tc.seed, run.shardings)
        batch = synthetic_batch(run, seed)
        jax.block_until_ready((state, batch))
        init_s = time.perf_counter() - start

        start = time.perf_counter()
        compiled = run.train_step.lower(state, batch).compile()
        compile_s = time.perf_counter() - start

        if warmup_steps:
            state, _, _ = _time_steps(compiled, state, batch, warmup_steps)
        state, intervals, elapsed, loss = _timed_steps(
            compiled, state, batch, steps, profile, profile_dir
        )

    tokens_per_step = tc.tokens_per_step
    tps = steps * tokens_per_step / elapsed
    flops = flops_per_token(config.model, tc.seq_len)
    peak = peak_flops_per_device(config.peak_flops)
    sizes = compiled_memory(compiled)
    memory, source = peak_memory(sizes)
    device = jax.devices()[0]
    return BenchResult(
        tokens_per_second=tps,
        mfu=mfu(flops, tps, peak * jax.device_count()),
        step_time_s=elapsed / steps,
        step_time_p50_s=float(np.percentile(intervals, 50)),
        step_time_p90_s=float(np.percentile(intervals, 90)),
        compile_s=compile_s,
        init_s=init_s,
        peak_memory_bytes=memory,
        memory_source=source,
        peak_rss_bytes=peak_rss_bytes(),
        compiled_memory=sizes,
        steps=steps,
        warmup_steps=warmup_steps,
        batch_size=tc.batch_size,
        seq_len=tc.seq_len,
        tokens_per_step=tokens_per_step,
        flops_per_token=flops,
        peak_flops_per_device=peak,
        num_devices=jax.device_count(),
        mesh=dict(run.mesh.shape),
        platform=device.platform,
        device_kind=device.device_kind,
        params=sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params)),
        final_loss=loss,
    )


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """XLA's memory plan of the compiled train step; `as_dict` is the JSON line `tinylm bench
    --compile_only` prints. `compiled_memory` is per device; `peak_memory_bytes` is its total
    times the local device count."""

    compiled_memory: dict[str, int]
    peak_memory_bytes: int
    compile_s: float
    batch_size: int
    seq_len: int
    microbatches: int
    loss_chunk_tokens: int
    num_devices: int
    mesh: dict[str, int]
    platform: str
    device_kind: str
    params: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def memory_plan(config: RunConfig) -> MemoryPlan:
    """Compiles the train step of `config` on abstract inputs (`abstract_step_inputs`), so a
    model too large for this host still gets its per-device memory plan."""
    run = build_run(config, blank_token_bytes(config.model) if config.model.uses_bytes else None)
    with run_context(run):
        state, batch = abstract_step_inputs(run)
        start = time.perf_counter()
        compiled = run.train_step.lower(state, batch).compile()
        compile_s = time.perf_counter() - start
    sizes = compiled_memory(compiled)
    if not sizes:
        raise ConfigError(
            f"the {jax.default_backend()} backend gives no memory analysis of compiled "
            "programs; run tinylm bench --compile_only on CPU, GPU or TPU"
        )
    device = jax.devices()[0]
    return MemoryPlan(
        compiled_memory=sizes,
        peak_memory_bytes=sizes["total_bytes"] * jax.local_device_count(),
        compile_s=compile_s,
        batch_size=config.train.batch_size,
        seq_len=config.train.seq_len,
        microbatches=config.train.microbatches,
        loss_chunk_tokens=config.model.loss_chunk_tokens,
        num_devices=jax.device_count(),
        mesh=dict(run.mesh.shape),
        platform=device.platform,
        device_kind=device.device_kind,
        params=sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params)),
    )


def plan_summary(plan: MemoryPlan) -> str:
    """The human-readable lines `tinylm bench --compile_only` prints before the JSON line."""
    gib = 1024**3
    sizes = plan.compiled_memory
    parts = ("argument", "output", "alias", "temp", "total")
    return (
        f"{plan.params:,} params | batch {plan.batch_size} x seq {plan.seq_len} | "
        f"{plan.num_devices} {plan.platform} device(s) ({plan.device_kind}), mesh {plan.mesh}\n"
        f"compile {plan.compile_s:.2f}s | memory plan per device, GiB: "
        + ", ".join(f"{p} {sizes[f'{p}_bytes'] / gib:.3f}" for p in parts)
    )


def summary(result: BenchResult) -> str:
    """The human-readable lines printed before the JSON line."""
    mib = 1024**2
    return (
        f"{result.params:,} params | batch {result.batch_size} x seq {result.seq_len} | "
        f"{result.num_devices} {result.platform} device(s) ({result.device_kind}), "
        f"mesh {result.mesh}\n"
        f"compile {result.compile_s:.2f}s | init {result.init_s:.2f}s | "
        f"{result.steps} steps after {result.warmup_steps} warm-up\n"
        f"{result.tokens_per_second:,.0f} tokens/s | MFU {100 * result.mfu:.1f}% | step "
        f"mean {1e3 * result.step_time_s:.1f} ms, p50 {1e3 * result.step_time_p50_s:.1f} ms, "
        f"p90 {1e3 * result.step_time_p90_s:.1f} ms\n"
        f"peak memory {result.peak_memory_bytes / mib:,.1f} MiB ({result.memory_source}); "
        f"process peak RSS {result.peak_rss_bytes / mib:,.1f} MiB"
    )
