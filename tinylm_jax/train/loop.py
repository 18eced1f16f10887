"""The training loop: builds a run from gin, restores or initializes it, trains, evaluates."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shutil
import time
from pathlib import Path

import flax.linen as nn
import gin
import jax
import numpy as np

from tinylm_jax import config as config_lib
from tinylm_jax.data import pipeline
from tinylm_jax.data.config import DataConfig
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.model.config import ConfigError, ModelConfig
from tinylm_jax.model.counting import flops_per_token
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.batch import to_global
from tinylm_jax.parallel.mesh import MeshConfig, make_mesh
from tinylm_jax.train import checkpoint as ckpt
from tinylm_jax.train.metrics import MetricsWriter, format_duration, peak_flops_per_device
from tinylm_jax.train.optimizer import OptimizerConfig, make_optimizer
from tinylm_jax.train.state import TrainState, abstract_state, init_state, make_init_fn
from tinylm_jax.train.step import eval_step, train_step


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """`batch_size` is global, in sequences; `eval_every` 0 evaluates only at the end."""

    num_steps: int = 1000
    batch_size: int = 16
    seq_len: int = 256
    seed: int = 0
    microbatches: int = 1
    log_every: int = 10
    eval_every: int = 0
    eval_steps: int = 8

    def __post_init__(self) -> None:
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


def train(workdir: str | Path) -> dict[str, float]:
    """Trains (or resumes) the run configured by gin in `workdir`; returns the last metrics."""
    workdir = Path(workdir)
    primary = jax.process_index() == 0
    run = build_run()
    tc = run.train_config
    data = prepare_data(tc.seq_len)
    pipeline.check_vocab(data.tokenizer, run.model_config.vocab_size)
    checkpoint_config = ckpt.CheckpointConfig()
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        config_lib.write_operative_config(workdir / "config.gin")
        if Path(data.tokenizer.path).resolve() != (workdir / "tokenizer.model").resolve():
            shutil.copyfile(data.tokenizer.path, workdir / "tokenizer.model")

    process_batch = tc.batch_size // jax.process_count()
    iterator = pipeline.make_train_iterator(
        data,
        process_batch,
        seed=tc.seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    manager = ckpt.make_manager(workdir, checkpoint_config)
    restored = ckpt.restore_latest(manager, run.abstract, run.shardings, iterator)
    if restored is None:
        with run_context(run):
            state = init_state(run.init_fn, tc.seed, run.shardings)
    else:
        state, _ = restored
    start_step = int(jax.device_get(state.step))
    saved_step = start_step if restored is not None else None
    metadata = {"tokenizer_fingerprint": data.tokenizer.fingerprint, "data_stats": data.stats}

    writer = MetricsWriter(workdir, primary)
    flops = flops_per_token(run.model_config, tc.seq_len)
    peak = peak_flops_per_device() * jax.device_count()
    byte_lengths_V = token_byte_lengths(data.tokenizer.path, run.model_config.vocab_size)
    tokens_per_step = tc.batch_size * tc.seq_len
    last = {}
    if primary:
        print(
            f"training {tc.num_steps} steps from step {start_step} on "
            f"{jax.device_count()} device(s), mesh {dict(run.mesh.shape)}",
            flush=True,
        )
    run_start = time.perf_counter()
    with run_context(run):
        step_fn = None
        for step in range(start_step, tc.num_steps):
            batch = next(iterator)
            batch.pop("ids", None)
            batch = to_global(batch, run.mesh, run.rules)
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
            interval_steps += 1
            if done % tc.log_every == 0 or done == tc.num_steps:
                metrics = jax.device_get(metrics)
                _check_finite(metrics, done)
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
            if tc.eval_every and done % tc.eval_every == 0 and done != tc.num_steps:
                last.update(_eval_and_log(run, state, data, byte_lengths_V, writer, done))
                paused = True
            if done % checkpoint_config.every_steps == 0:
                paused = ckpt.save(manager, state, iterator, metadata) or paused
                saved_step = done
            if paused:  # keep eval and checkpoint time out of the next throughput figure
                interval_start, interval_steps = time.perf_counter(), 0
        last.update(_eval_and_log(run, state, data, byte_lengths_V, writer, tc.num_steps))
    if saved_step != tc.num_steps:
        ckpt.save(manager, state, iterator, metadata, force=True)
    manager.wait_until_finished()
    manager.close()
    writer.close()
    if primary:
        print(
            f"done in {format_duration(time.perf_counter() - run_start)}; "
            f"checkpoints in {ckpt.checkpoint_dir(workdir)}",
            flush=True,
        )
    return last


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


def _check_finite(metrics: dict, step: int) -> None:
    for key in ("loss", "grad_norm"):
        if not np.isfinite(metrics[key]):
            raise FloatingPointError(
                f"non-finite {key} ({metrics[key]}) at step {step}; the last checkpoint is kept. "
                "Lower OptimizerConfig.learning_rate or set OptimizerConfig.grad_clip."
            )
