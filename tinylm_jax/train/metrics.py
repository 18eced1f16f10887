"""Run metrics: peak FLOP/s for MFU, throughput, the finite guard, log lines; the writer for
stdout, metrics.jsonl and the trackers (TensorBoard, W&B)."""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Sequence
from typing import IO

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tinylm_jax import layout
from tinylm_jax.engine.run import Run
from tinylm_jax.errors import ConfigError
from tinylm_jax.files import write_atomically
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.train.trackers import TensorBoardTracker, Tracker

# Dense bf16 peak FLOP/s per JAX device (one chip; TPU v2/v3 expose one device per core).
PEAK_FLOPS = {
    "TPU v2": 22.5e12,
    "TPU v3": 61.5e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "A100": 312e12,
    "H100": 989e12,
    "H200": 989e12,
    "H800": 989e12,
    "A10G": 125e12,
    "L4": 121e12,
    "V100": 125e12,
}


@functools.cache
def measured_cpu_flops(size: int = 1024, repeats: int = 4, trials: int = 5) -> float:
    """FLOP/s a jitted float32 matmul reaches on this host's CPU devices, all cores together.

    The best of several short trials: a peak, so a trial slowed by another process or a cold
    cache should not lower it (a single trial varied by ±20% run to run on a 2-core host).
    """
    x = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda a: (a @ a) * 1e-3)
    matmul(x).block_until_ready()
    best = math.inf
    for _ in range(trials):
        start = time.perf_counter()
        y = x
        for _ in range(repeats):
            y = matmul(y)
        y.block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def peak_flops_per_device(override: float | None = None, device: jax.Device | None = None) -> float:
    """Peak FLOP/s of one device, the denominator of MFU.

    Accelerators use the vendor's dense bf16 figure. CPUs have no such table: their "peak" is
    the measured float32 matmul throughput of the host shared by its local CPU devices, so CPU
    MFU says how close the step comes to XLA's best dense matmul here. Override with
    `peak_flops_per_device.override = 1e12`.
    """
    if override:
        return float(override)
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        return measured_cpu_flops() / max(jax.local_device_count(), 1)
    kind = device.device_kind
    for name in sorted(PEAK_FLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_FLOPS[name]
    raise ConfigError(
        f"No peak FLOP/s known for device kind {kind!r}; set "
        "--gin_param='peak_flops_per_device.override = <FLOP/s>'"
    )


def mfu(flops_per_token: float, tokens_per_second: float, peak_flops: float) -> float:
    """Model FLOPs utilization: training FLOP/s achieved over `peak_flops` (all devices)."""
    return flops_per_token * tokens_per_second / peak_flops


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def train_summary(
    workdir, last: dict[str, float], tokens_seen: int, tokens_this_run: int, wall_s: float
) -> str:
    # wall_s covers data preparation, compilation, evals and saves; the rate is the steps'.
    """What a finished `tinylm train` prints: results, where things are, what to run next."""
    workdir = str(workdir)
    lines = [f"done in {format_duration(wall_s)} wall time: {tokens_seen:,} tokens seen"]
    if tokens_this_run and "tokens_per_second" in last:
        lines[0] += f", {last['tokens_per_second']:,.0f} tokens/s in the last logged steps"
    results = []
    if "loss" in last:
        results.append(f"final train loss {last['loss']:.4f}")
    if "eval_bits_per_byte" in last:
        results.append(
            f"held-out loss {last['eval_loss']:.4f}, {last['eval_bits_per_byte']:.4f} bits per byte"
        )
    if results:
        lines.append("  " + " | ".join(results))
    lines += [
        f"  checkpoints  {workdir}/checkpoints",
        f"  metrics      {layout.metrics_file(workdir)}",
        f"  tensorboard  {workdir}/tensorboard",
        "next:",
        f"  tinylm sample --workdir={workdir} --prompt='...'",
        f"  tinylm eval --workdir={workdir}",
        f"  tinylm export-hf --workdir={workdir} --out={workdir}/hf",
        f"  tinylm plot --workdir={workdir} --out={workdir}/curves.png",
        f"  tensorboard --logdir={workdir}/tensorboard",
    ]
    return "\n".join(lines)


def _json_number(value) -> int | float:
    return value if isinstance(value, int) else float(value)


class MetricsWriter:
    """Writes records to `metrics.jsonl`, TensorBoard events and a readable stdout line.

    Only the primary process writes files, so multi-process runs keep one log. Object stores
    (gs://) cannot append, so there the log is rewritten whole, at most every
    `remote_flush_seconds` and on close; a killed run loses at most that much of its log, and
    those steps are logged again when it resumes from its last checkpoint.
    """

    def __init__(
        self,
        workdir: epath.PathLike,
        primary: bool = True,
        remote_flush_seconds: float = 30.0,
        trackers: Sequence[Tracker] | None = None,
    ):
        """`trackers` get every record too (None: TensorBoard events, without hparams)."""
        self.primary = primary
        self._jsonl: IO[str] | None = None
        self._trackers: list[Tracker] = []
        self._remote_lines: list[str] | None = None
        if primary:
            workdir = epath.Path(workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            self._path = layout.metrics_file(workdir)
            if "://" in str(workdir):
                self._remote_lines = (
                    self._path.read_text().splitlines(keepends=True) if self._path.exists() else []
                )
                self._flush_every, self._flushed_at = remote_flush_seconds, time.monotonic()
            else:
                self._jsonl = self._path.open("a")  # closed in close()
            if trackers is None:
                trackers = [TensorBoardTracker(workdir)]
            self._trackers = list(trackers)

    def write(self, step: int, record: dict[str, float], line: str | None = None) -> None:
        if not self.primary:
            return
        # Counts (`round`, `units_selected`) stay integers; everything else is a float.
        record = {"step": step, **{k: _json_number(v) for k, v in record.items()}}
        text = json.dumps(record) + "\n"
        if self._jsonl is not None:
            self._jsonl.write(text)
            self._jsonl.flush()
        elif self._remote_lines is not None:
            self._remote_lines.append(text)
            if time.monotonic() - self._flushed_at >= self._flush_every:
                self._flush_remote(self._remote_lines)
        for tracker in self._trackers:
            tracker.log(step, {k: v for k, v in record.items() if k != "step"})
        if line:
            print(line, flush=True)

    def _flush_remote(self, lines: list[str]) -> None:
        write_atomically(self._path, "".join(lines))
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._remote_lines is not None:
            self._flush_remote(self._remote_lines)
        for tracker in self._trackers:
            tracker.close()


class Throughput:
    """Tokens per second over the steps since the last `reset` (eval and checkpoint time is
    kept out by resetting after them)."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.reset()

    def reset(self) -> None:
        self._start, self.steps = time.perf_counter(), 0

    def add_step(self) -> None:
        self.steps += 1

    def step_time(self) -> float:
        return (time.perf_counter() - self._start) / max(self.steps, 1)

    def tokens_per_second(self) -> float:
        return self.tokens_per_step / max(self.step_time(), 1e-9)


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient first seen at step `bad_step`, noticed at `step`."""

    def __init__(self, message: str, bad_step: int, step: int):
        super().__init__(message)
        self.bad_step, self.step = bad_step, step


class FiniteGuard:
    """The step of the first non-finite loss or gradient norm, tracked on device every step
    and read only at log and checkpoint steps, so the loop never waits on the device per step.
    """

    def __init__(self, run: Run):
        replicated = rules_lib.replicated(run.mesh)
        self.first_bad = jax.device_put(np.int32(-1), replicated)
        self._track = jax.jit(_track_first_bad, out_shardings=replicated)
        self._all_finite = jax.jit(_all_finite, out_shardings=replicated)

    def update(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.first_bad = self._track(self.first_bad, step, metrics["loss"], metrics["grad_norm"])

    def check(self, step: int, saved_step: int | None, manager, params=None) -> None:
        """Raises FloatingPointError at the first bad step; with `params` (before a save) the
        parameters must be finite too, so no checkpoint ever holds NaN or inf."""
        bad = int(jax.device_get(self.first_bad))
        if bad < 0 and params is not None and not bool(jax.device_get(self._all_finite(params))):
            bad = step
        if bad < 0:
            return
        manager.wait_until_finished()
        kept = f"step {saved_step}" if saved_step is not None else "none"
        raise NonFiniteError(
            f"non-finite loss or gradients at step {bad} (detected at step {step}); stopped "
            f"without saving it. Last good checkpoint: {kept} in {manager.directory}. "
            "Lower OptimizerConfig.learning_rate, set OptimizerConfig.grad_clip, or set "
            "TrainConfig.on_nonfinite = 'rollback'.",
            bad,
            step,
        )


def _track_first_bad(first_bad, step, loss, grad_norm):
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return jnp.where((first_bad < 0) & ~finite, jnp.int32(step), first_bad)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def step_record(
    metrics: dict, throughput: Throughput, flops_per_token_: float, peak_flops: float
) -> dict[str, float]:
    """The `metrics.jsonl` record of a logged step (host values)."""
    tokens_per_second = throughput.tokens_per_second()
    record = {k: float(v) for k, v in metrics.items() if k != "tokens"}
    record.update(
        tokens_per_second=tokens_per_second,
        mfu=mfu(flops_per_token_, tokens_per_second, peak_flops),
        step_time_s=throughput.step_time(),
    )
    return record


def step_line(record: dict[str, float], step: int, num_steps: int) -> str:
    eta = (num_steps - step) * record["step_time_s"]
    return (
        f"step {step}/{num_steps} | loss {record['loss']:.4f} | "
        f"lr {record['learning_rate']:.2e} | grad_norm {record['grad_norm']:.3f} | "
        f"{record['tokens_per_second']:,.0f} tok/s | MFU {100 * record['mfu']:.1f}% | "
        f"ETA {format_duration(eta)}"
    )


def eval_line(result: dict[str, float], step: int) -> str:
    return (
        f"eval step {step} | loss {result['eval_loss']:.4f} | "
        f"ppl {result['eval_perplexity']:.2f} | bits/byte {result['eval_bits_per_byte']:.4f}"
    )
