"""The training loop: builds a run from gin, restores or initializes it, trains, evaluates."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shutil
import signal
import time
from pathlib import Path

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax import config as config_lib
from tinylm_jax.data import pipeline
from tinylm_jax.data.config import DataConfig
from tinylm_jax.data.errors import DataError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.model.config import ConfigError, ModelConfig
from tinylm_jax.model.counting import flops_per_token
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.batch import to_global
from tinylm_jax.parallel.distributed import PreemptionWatcher
from tinylm_jax.parallel.mesh import MeshConfig, make_mesh
from tinylm_jax.train import checkpoint as ckpt
from tinylm_jax.train.metrics import MetricsWriter, format_duration, peak_flops_per_device
from tinylm_jax.train.optimizer import OptimizerConfig, make_optimizer
from tinylm_jax.train.state import TrainState, abstract_state, init_state, make_init_fn
from tinylm_jax.train.step import eval_step, train_step


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """`batch_size` is global, in sequences; `eval_every` 0 evaluates only at the end,
    `eval_steps` 0 never.

    `data_sharding`: 'global' — every process reads the whole global batch and feeds its
    devices' rows, so batches (and results) do not depend on the process count; 'process' —
    each process reads only its own shard of the records (less reading on many hosts, but
    the batches differ with the process count).
    """

    num_steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    seed: int = 0
    microbatches: int = 1
    log_every: int = 10
    eval_every: int = 0
    eval_steps: int = 8
    data_sharding: str = "global"

    def __post_init__(self) -> None:
        if self.data_sharding not in ("global", "process"):
            raise ConfigError(
                f"TrainConfig.data_sharding must be 'global' or 'process'; got "
                f"{self.data_sharding!r}"
            )
        if self.batch_size % self.microbatches:
            raise ConfigError(
                f"TrainConfig.batch_size={self.batch_size} is not divisible by "
                f"TrainConfig.microbatches={self.microbatches}"
            )
        if min(self.num_steps, self.batch_size, self.seq_len, self.log_every) <= 0:
            raise ConfigError(f"TrainConfig sizes must be positive: {self}")


@dataclasses.dataclass
class Run:
    """Everything a step needs, built once from gin; shared by train, eval and bench."""

    model_config: ModelConfig
    train_config: TrainConfig
    mesh: jax.sharding.Mesh
    rules: rules_lib.Rules
    model: Transformer
    init_fn: object
    abstract: TrainState
    shardings: TrainState
    train_step: object
    schedule: object


def build_run(
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
) -> Run:
    """Builds model, optimizer, mesh and the jitted step from the parsed gin config."""
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    if train_config.seq_len > model_config.max_seq_len:
        raise ConfigError(
            f"TrainConfig.seq_len={train_config.seq_len} exceeds "
            f"ModelConfig.max_seq_len={model_config.max_seq_len}"
        )
    mesh = make_mesh(MeshConfig())
    rules = rules_lib.logical_axis_rules()
    rules_lib.check_batch_divisible(
        train_config.batch_size // train_config.microbatches,
        mesh,
        rules,
        "TrainConfig.batch_size / microbatches",
    )
    model = Transformer(model_config)
    tx, schedule = make_optimizer(OptimizerConfig(), train_config.num_steps)
    init_fn = make_init_fn(model, tx, train_config.seq_len)
    abstract, shardings = abstract_state(init_fn, mesh, rules)
    step = functools.partial(
        train_step, model=model, tx=tx, schedule=schedule, microbatches=train_config.microbatches
    )
    batch_shardings = rules_lib.batch_sharding(mesh, rules)
    jitted = jax.jit(
        step,
        in_shardings=(shardings, batch_shardings),
        out_shardings=(shardings, rules_lib.replicated(mesh)),
        donate_argnums=0,
    )
    return Run(
        model_config,
        train_config,
        mesh,
        rules,
        model,
        init_fn,
        abstract,
        shardings,
        jitted,
        schedule,
    )


@contextlib.contextmanager
def mesh_context(mesh: jax.sharding.Mesh, rules: rules_lib.Rules):
    """The mesh and logical-axis rules that tracing the model's sharding constraints needs."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def run_context(run: Run):
    return mesh_context(run.mesh, run.rules)


def evaluate(
    run: Run,
    params,
    data: pipeline.PreparedData,
    byte_lengths_V: np.ndarray,
    num_batches: int | None,
) -> dict[str, float]:
    """Held-out loss, perplexity and bits per byte over the validation split."""
    process_batch = run.train_config.batch_size // jax.process_count()
    iterator = pipeline.make_eval_iterator(
        data,
        process_batch,
        num_batches=num_batches,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    step = jax.jit(
        functools.partial(eval_step, model=run.model), out_shardings=rules_lib.replicated(run.mesh)
    )
    table = jax.device_put(byte_lengths_V, rules_lib.replicated(run.mesh))
    totals = {"loss_sum": 0.0, "tokens": 0.0, "bytes": 0.0}
    with run_context(run):
        for batch in iterator:
            sums = jax.device_get(step(params, to_global(batch, run.mesh, run.rules), table))
            for key in totals:
                totals[key] += float(sums[key])
    if totals["tokens"] == 0:
        raise ConfigError("the validation split is empty; raise DataConfig.validation_fraction")
    loss = totals["loss_sum"] / totals["tokens"]
    return {
        "eval_loss": loss,
        "eval_perplexity": math.exp(min(loss, 50.0)),
        "eval_bits_per_byte": totals["loss_sum"] / math.log(2) / max(totals["bytes"], 1.0),
        "eval_tokens": totals["tokens"],
    }


def prepare_data(seq_len: int) -> pipeline.PreparedData:
    """Prepares the dataset once per host: process 0 first, then the others reuse its cache."""
    from jax.experimental import multihost_utils

    config = DataConfig()
    if jax.process_index() == 0:
        data = pipeline.prepare_data(config, seq_len)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("tinylm_prepare_data")
    if jax.process_index() != 0:
        data = pipeline.prepare_data(config, seq_len)
    return data


PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: `tinylm train` saved a checkpoint and stopped early

# Test-only fault injection: "KILL@5" SIGKILLs this process right after step 5 is dispatched,
# "KILL@4:save" right after step 4's checkpoint save was started (async saves are then still
# being written), "TERM@3" sends it SIGTERM after step 3. Unset in normal use.
FAULT_ENV = "TINYLM_TEST_FAULT"


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint at `step`."""

    def __init__(self, step: int, directory: Path):
        super().__init__(f"preempted: saved step {step} in {directory}; rerun to resume")
        self.step = step


def train(workdir: str | Path) -> dict[str, float]:
    """Trains (or resumes) the run configured by gin in `workdir`; returns the last metrics.

    Resumes from the newest good checkpoint in `workdir`, bit-exactly (same params and losses
    as an uninterrupted run on the same mesh). Without one, starts from
    `CheckpointConfig.init_from`'s params if set, else from a fresh init. Raises `Preempted`
    after saving when SIGTERM arrives, FloatingPointError on a non-finite loss or gradient
    (its step is never saved).
    """
    workdir = Path(workdir)
    primary = jax.process_index() == 0
    run = build_run()
    tc = run.train_config
    data = prepare_data(tc.seq_len)
    pipeline.check_vocab(data.tokenizer, run.model_config.vocab_size)
    checkpoint_config = ckpt.CheckpointConfig()
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        # Atomic writes: a run killed at any moment leaves a usable config and tokenizer.
        _replace_atomically(workdir / "config.gin", config_lib.write_operative_config)
        if Path(data.tokenizer.path).resolve() != (workdir / "tokenizer.model").resolve():
            _replace_atomically(
                workdir / "tokenizer.model", lambda p: shutil.copyfile(data.tokenizer.path, p)
            )

    iterator = _train_iterator(data, tc)
    manager = ckpt.make_manager(workdir, checkpoint_config)
    try:
        return _train_loop(workdir, run, data, iterator, manager, checkpoint_config)
    finally:
        manager.wait_until_finished()  # an interrupted run still completes its last good save
        manager.close()


def _train_loop(
    workdir: Path, run: Run, data, iterator, manager, checkpoint_config: ckpt.CheckpointConfig
) -> dict[str, float]:
    tc = run.train_config
    primary = jax.process_index() == 0
    state, metadata = _restore_or_init(run, data, iterator, manager, checkpoint_config)
    start_step = int(jax.device_get(state.step))
    saved_step = metadata["step"]

    flops = flops_per_token(run.model_config, tc.seq_len)
    peak = peak_flops_per_device() * jax.device_count()
    byte_lengths_V = token_byte_lengths(data.tokenizer.path, run.model_config.vocab_size)
    tokens_per_step = tc.batch_size * tc.seq_len
    replicated = rules_lib.replicated(run.mesh)
    # Step of the first non-finite loss/gradient (-1: none), tracked on device every step and
    # read only at log and checkpoint steps, so the loop never waits on the device per step.
    first_bad = jax.device_put(np.int32(-1), replicated)
    track_faults = jax.jit(_track_faults, out_shardings=replicated)
    all_finite = jax.jit(_all_finite, out_shardings=replicated)
    fault = _test_fault()
    last = {}
    if primary:
        print(
            f"training {tc.num_steps} steps from step {start_step} on "
            f"{jax.device_count()} device(s), mesh {dict(run.mesh.shape)}",
            flush=True,
        )
    run_start = time.perf_counter()
    writer = MetricsWriter(workdir, primary)
    with contextlib.closing(writer), PreemptionWatcher() as preemption, run_context(run):
        step_fn = None
        for step in range(start_step, tc.num_steps):
            batch = _next_batch(iterator, run)
            if step_fn is None:  # compile ahead of the first step so step times exclude it
                compile_start = time.perf_counter()
                step_fn = run.train_step.lower(state, batch).compile()
                if primary:
                    print(
                        f"compiled the train step in {time.perf_counter() - compile_start:.1f}s",
                        flush=True,
                    )
                interval_start, interval_steps = time.perf_counter(), 0
            state, metrics = step_fn(state, batch)
            done = step + 1
            first_bad = track_faults(first_bad, done, metrics["loss"], metrics["grad_norm"])
            interval_steps += 1
            _maybe_inject_fault(fault, done)
            if done % tc.log_every == 0 or done == tc.num_steps:
                _check_finite(first_bad, done, saved_step, manager)
                metrics = jax.device_get(metrics)
                elapsed = time.perf_counter() - interval_start
                tps = interval_steps * tokens_per_step / max(elapsed, 1e-9)
                record = {k: float(v) for k, v in metrics.items() if k != "tokens"}
                record.update(
                    tokens_per_second=tps,
                    mfu=flops * tps / peak,
                    step_time_s=elapsed / interval_steps,
                )
                eta = (tc.num_steps - done) * elapsed / interval_steps
                writer.write(
                    done,
                    record,
                    (
                        f"step {done}/{tc.num_steps} | loss {record['loss']:.4f} | "
                        f"lr {record['learning_rate']:.2e} | grad_norm {record['grad_norm']:.3f} | "
                        f"{tps:,.0f} tok/s | MFU {100 * record['mfu']:.1f}% | "
                        f"ETA {format_duration(eta)}"
                    ),
                )
                last = record
                interval_start, interval_steps = time.perf_counter(), 0
            paused = False
            if tc.eval_every and tc.eval_steps and done % tc.eval_every == 0:
                if done != tc.num_steps:
                    last.update(_eval_and_log(run, state, data, byte_lengths_V, writer, done))
                    paused = True
            preempted = preemption.should_stop(done)
            if done % checkpoint_config.every_steps == 0 or done == tc.num_steps or preempted:
                _check_finite(first_bad, done, saved_step, manager, all_finite(state.params))
                ckpt.save(manager, state, iterator, _metadata(metadata, done), force=True)
                saved_step = done
                paused = True
                _maybe_inject_fault(fault, done, "save")
            if preempted:
                manager.wait_until_finished()
                if primary:
                    print(f"SIGTERM: saved step {done}; stopping", flush=True)
                raise Preempted(done, ckpt.checkpoint_dir(workdir))
            if paused:  # keep eval and checkpoint time out of the next throughput figure
                interval_start, interval_steps = time.perf_counter(), 0
        if tc.eval_steps:
            last.update(_eval_and_log(run, state, data, byte_lengths_V, writer, tc.num_steps))
    manager.wait_until_finished()
    if primary:
        print(
            f"done in {format_duration(time.perf_counter() - run_start)}; "
            f"checkpoints in {ckpt.checkpoint_dir(workdir)}",
            flush=True,
        )
    return last


def _train_iterator(data: pipeline.PreparedData, tc: TrainConfig):
    """This process's batch iterator; see `TrainConfig.data_sharding`."""
    if tc.data_sharding == "global":
        return pipeline.make_train_iterator(data, tc.batch_size, seed=tc.seed)
    return pipeline.make_train_iterator(
        data,
        tc.batch_size // jax.process_count(),
        seed=tc.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )


def _next_batch(iterator, run: Run) -> dict[str, jax.Array]:
    batch = next(iterator)
    batch.pop("ids", None)
    if run.train_config.data_sharding == "process":
        return to_global(batch, run.mesh, run.rules)
    # Every process holds the whole global batch; each device takes its rows from it.
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.dtype == np.int64:
            value = value.astype(np.int32)
        sharding = rules_lib.batch_sharding(run.mesh, run.rules, value.ndim)
        out[key] = jax.make_array_from_callback(
            value.shape, sharding, lambda index, v=value: v[index]
        )
    return out


def _restore_or_init(
    run: Run, data, iterator, manager, checkpoint_config: ckpt.CheckpointConfig
) -> tuple[TrainState, dict]:
    """(state, metadata) of the newest good checkpoint, else a fresh (or inherited) start."""
    restored = ckpt.restore_latest(
        manager, run.abstract, run.shardings, iterator, set_aside_damaged=True
    )
    fingerprint = data.tokenizer.fingerprint
    current = {
        "tokenizer_fingerprint": fingerprint,
        "data_stats": data.stats,
        "mesh": dict(run.mesh.shape),
    }
    if restored is not None:
        state, metadata = restored
        saved = metadata.get("tokenizer_fingerprint")
        if saved is not None and saved != fingerprint:
            raise DataError(
                f"the checkpoints in {manager.directory} were trained with another tokenizer "
                f"(fingerprint {saved[:16]}, now {fingerprint[:16]}); point DataConfig.tokenizer "
                "at the workdir's tokenizer.model or train in a new --workdir"
            )
        return state, {"rounds": {}, **metadata, **current, "step": int(jax.device_get(state.step))}
    with run_context(run):
        state = init_state(run.init_fn, run.train_config.seed, run.shardings)
    init_from = None
    if checkpoint_config.init_from:
        state, init_from = _init_from(state, checkpoint_config)
    return state, {**current, "rounds": {}, "init_from": init_from, "step": None}


def _init_from(state: TrainState, config: ckpt.CheckpointConfig) -> tuple[TrainState, dict]:
    mapping = None if config.init_mapping is None else dict(config.init_mapping)
    prefixes = None if mapping is None else sorted(set(mapping.values()))
    source, step = ckpt.load_params(config.init_from, config.init_step, prefixes)
    params, replaced = ckpt.inherit_params(state.params, source, mapping)
    if jax.process_index() == 0:
        print(
            f"initialized {len(replaced)} param arrays from {config.init_from} step {step}",
            flush=True,
        )
    info = {"workdir": str(Path(config.init_from).absolute()), "step": step, "params": replaced}
    return state.replace(params=params), info


def _metadata(base: dict, step: int) -> dict:
    """The JSON saved with each checkpoint. `rounds` is the multi-round replay schedule."""
    return {
        **base,
        "step": step,
        "gin_config": gin.operative_config_str(),
        "process_count": jax.process_count(),
    }


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _track_faults(first_bad, step, loss, grad_norm):
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    return jnp.where((first_bad < 0) & ~finite, jnp.int32(step), first_bad)


def _test_fault() -> tuple[str, int, str] | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    signame, _, rest = spec.partition("@")
    step, _, phase = rest.partition(":")
    return signame, int(step), phase or "step"


def _maybe_inject_fault(fault, step: int, phase: str = "step") -> None:
    if fault is not None and fault[1:] == (step, phase):
        os.kill(os.getpid(), getattr(signal, "SIG" + fault[0]))


def _eval_and_log(
    run: Run, state: TrainState, data, byte_lengths_V, writer: MetricsWriter, step: int
) -> dict[str, float]:
    result = evaluate(run, state.params, data, byte_lengths_V, run.train_config.eval_steps)
    writer.write(
        step,
        result,
        (
            f"eval step {step} | loss {result['eval_loss']:.4f} | "
            f"ppl {result['eval_perplexity']:.2f} | bits/byte {result['eval_bits_per_byte']:.4f}"
        ),
    )
    return result


def _check_finite(first_bad, step: int, saved_step, manager, params_finite=None) -> None:
    """Stops the run at the first non-finite loss or gradient. `params_finite` (a device
    bool), when given, must be True too: checked before every save, so no checkpoint ever
    holds NaN or inf."""
    bad = int(jax.device_get(first_bad))
    if bad < 0 and params_finite is not None and not bool(jax.device_get(params_finite)):
        bad = step
    if bad >= 0:
        manager.wait_until_finished()
        kept = f"step {saved_step}" if saved_step is not None else "none"
        raise FloatingPointError(
            f"non-finite loss or gradients at step {bad} (detected at step {step}); stopped "
            f"without saving it. Last good checkpoint: {kept} in {manager.directory}. "
            "Lower OptimizerConfig.learning_rate or set OptimizerConfig.grad_clip."
        )


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))
