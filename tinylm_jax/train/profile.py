"""`--profile_steps=A:B`: a `jax.profiler` trace of the steps after step A up to step B, written
where TensorBoard's profile plugin finds it (`<log dir>/plugins/profile/<run>/*.xplane.pb`)."""

from __future__ import annotations

import dataclasses

import jax

from tinylm_jax.errors import ConfigError
from tinylm_jax.train.hooks import Hook, StepInfo


def parse_steps(spec: str | None) -> tuple[int, int] | None:
    """(A, B) of 'A:B' (0 <= A < B), or None for no profile."""
    if not spec:
        return None
    start, sep, stop = spec.partition(":")
    try:
        first, last = int(start), int(stop)
    except ValueError:
        first, last = -1, -1
    if not sep or not 0 <= first < last:
        raise ConfigError(
            f"--profile_steps={spec!r}: expected A:B with 0 <= A < B (the trace covers the "
            "steps after step A up to step B), e.g. --profile_steps=5:8"
        )
    return first, last


def profile_hook(steps: tuple[int, int], log_dir: str) -> Hook:
    """A train-loop hook tracing steps A+1..B into `log_dir` (the run's TensorBoard dir).

    The trace starts once step A is done (after the first step when a run resumes between A
    and B) and stops after step B's results are ready, so B's device work is in it.
    """
    first, last = steps
    tracing = {"on": False, "done": False}

    def hook(info: StepInfo) -> StepInfo:
        if info.step >= last and tracing["on"]:
            jax.block_until_ready(info.metrics)
            jax.profiler.stop_trace()
            tracing.update(on=False, done=True)
            print(f"profile of steps {first + 1}-{last} written to {log_dir}", flush=True)
            return dataclasses.replace(info, paused=True)  # tracing slowed these steps
        if first <= info.step < last and not tracing["on"] and not tracing["done"]:
            jax.profiler.start_trace(log_dir)
            tracing["on"] = True
        return info

    return hook
