"""The training loop, made of small parts: data, restore-or-init, step, log, eval, round,
save, stop.

`train(config, workdir)` runs a `RunConfig` in a workdir; each part below is a plain function
or a small class that the loop calls in order and tests can drive alone. The multi-round part
(`tinylm_jax.train.rounds`) scores and reselects the data between rounds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import TrainState, init_state
from tinylm_jax.engine.token_bytes import check_token_bytes, token_bytes_for
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.heldout import evaluate
from tinylm_jax.files import write_atomically
from tinylm_jax.model.counting import flops_per_token
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.batch import global_batch_to_devices, to_global
from tinylm_jax.parallel.distributed import PreemptionWatcher
from tinylm_jax.train import rounds as rounds_part
from tinylm_jax.train.metrics import (
    MetricsWriter,
    format_duration,
    mfu,
    peak_flops_per_device,
    train_summary,
)
from tinylm_jax.train.prefetch import DevicePrefetcher

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: `tinylm train` saved a checkpoint and stopped early


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint at `step`."""

    def __init__(self, step: int, directory):
        super().__init__(f"preempted: saved step {step} in {directory}; rerun to resume")
        self.step = step


@dataclasses.dataclass(frozen=True)
class TrainHooks:
    """Callbacks run at fixed points of the loop (tests install them to inject faults).

    `after_step(step)` runs right after step `step` is dispatched; `after_save(step)` right
    after its checkpoint save has started (an async save is then still being written);
    `after_score_batch(i)` after batch i of a multi-round scoring pass is dispatched.
    """

    after_step: Callable[[int], None] | None = None
    after_save: Callable[[int], None] | None = None
    after_score_batch: Callable[[int], None] | None = None


def train(
    config: RunConfig, workdir: str | epath.PathLike, hooks: TrainHooks | None = None
) -> dict[str, float]:
    """Trains (or resumes) `config` in `workdir`; returns the last logged and eval metrics.

    Resumes from the newest good checkpoint in `workdir`, bit-exactly (same params and losses
    as an uninterrupted run on the same mesh). Without one, starts from
    `CheckpointConfig.init_from`'s params if set, else from a fresh init. Raises `Preempted`
    after saving when SIGTERM arrives, FloatingPointError on a non-finite loss or gradient
    (its step is never saved).
    """
    workdir = epath.Path(workdir)
    data = prepare_data_once(config.data, config.train.seq_len)
    check_data(data, config)
    run = build_run(config, token_bytes_for(config.model, data.tokenizer))
    rounds_part.check_rounds(config, run, len(data.train))
    if jax.process_index() == 0:
        write_run_files(workdir, config, data.tokenizer)
    iterator = rounds_part.RoundIterator(functools.partial(make_train_iterator, data, config.train))
    manager = ckpt.make_manager(workdir, config.checkpoint)
    try:
        return _train_loop(workdir, run, data, iterator, manager, hooks or TrainHooks())
    finally:
        manager.wait_until_finished()  # an interrupted run still completes its last good save
        manager.close()


def prepare_data_once(config: DataConfig, seq_len: int) -> pipeline.PreparedData:
    """Prepares the dataset once per host: process 0 first, then the others reuse its cache."""
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        data = pipeline.prepare_data(config, seq_len)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("tinylm_prepare_data")
    if jax.process_index() != 0:
        data = pipeline.prepare_data(config, seq_len)
    return data


def check_data(data: pipeline.PreparedData, config: RunConfig) -> None:
    """Fails before the first step on data the run cannot use."""
    pipeline.check_vocab(data.tokenizer, config.model.vocab_size)
    if len(data.train) == 0:
        raise DataError(
            f"the training split of {data.stats['dataset']} holds no records; check "
            "DataConfig.dataset / DataConfig.paths"
        )
    if config.train.eval_steps and len(data.validation) == 0:
        raise ConfigError(
            f"the validation split of {data.stats['dataset']} is empty "
            f"(DataConfig.validation_fraction={config.data.validation_fraction} of "
            f"{data.stats['train']['documents']} documents): raise "
            "DataConfig.validation_fraction, add documents, or set TrainConfig.eval_steps = 0"
        )


def write_run_files(workdir: epath.Path, config: RunConfig, tokenizer: Tokenizer) -> None:
    """`config.gin` and the tokenizer's files, written atomically: a run killed at any moment
    leaves usable copies."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomically(layout.config_file(workdir), config.gin_config)
    tokenizer.save(workdir)


def make_train_iterator(
    data: pipeline.PreparedData,
    tc: TrainConfig,
    sequence_ids: np.ndarray | None = None,
    round_index: int = 1,
):
    """This process's batch iterator over `sequence_ids` (None: the whole split) for round
    `round_index`, whose shuffle is seeded apart from the other rounds'; see
    `TrainConfig.data_sharding`."""
    seed = tc.resolved_data_seed + round_index - 1
    if tc.data_sharding == "global":
        return pipeline.make_train_iterator(
            data, tc.batch_size, seed=seed, sequence_ids=sequence_ids
        )
    return pipeline.make_train_iterator(
        data,
        tc.batch_size // jax.process_count(),
        seed=seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        sequence_ids=sequence_ids,
    )


def batch_to_devices(batch: dict, run: Run) -> dict[str, jax.Array]:
    """A host batch as global arrays on the mesh (the stable record ids stay on the host)."""
    batch = {k: v for k, v in batch.items() if k != "ids"}
    if run.config.train.data_sharding == "process":
        return to_global(batch, run.mesh, run.rules)
    return global_batch_to_devices(batch, run.mesh, run.rules)


def restore_or_init(
    run: Run, data, iterator, manager
) -> tuple[TrainState, dict, rounds_part.RoundState]:
    """(state, metadata, round) of the newest good checkpoint, else of a fresh (or inherited)
    start; the iterator is started on that round's data."""
    restored = ckpt.restore_latest_with_rounds(
        manager, run.abstract, run.shardings, iterator, set_aside_damaged=True
    )
    fingerprint = data.tokenizer.fingerprint
    current = {
        "tokenizer_fingerprint": fingerprint,
        "data_stats": data.stats,
        "mesh": dict(run.mesh.shape),
    }
    if run.model.token_bytes is not None:
        current["token_bytes_fingerprint"] = run.model.token_bytes.fingerprint
    if restored is not None:
        state, metadata, rounds_item = restored
        saved = metadata.get("tokenizer_fingerprint")
        if saved is not None and saved != fingerprint:
            raise DataError(
                f"the checkpoints in {manager.directory} were trained with another tokenizer "
                f"(fingerprint {saved[:16]}, now {fingerprint[:16]}); point DataConfig.tokenizer "
                "at the workdir's tokenizer.model or train in a new --workdir"
            )
        check_token_bytes(metadata, run.model.token_bytes, manager.directory)
        round_state = rounds_part.restored_state(run.config, len(data.train), metadata, rounds_item)
        iterator.start(round_state)
        step = int(jax.device_get(state.step))
        return state, {**metadata, **current, "step": step}, round_state
    with run_context(run):
        state = init_state(run.init_fn, run.config.train.seed, run.shardings)
    init_from = None
    if run.config.checkpoint.init_from:
        state, init_from = _init_from(state, run.config.checkpoint)
    round_state = rounds_part.initial_state(run.config, len(data.train))
    iterator.start(round_state)
    return state, {**current, "init_from": init_from, "step": None}, round_state


def _init_from(state: TrainState, config) -> tuple[TrainState, dict]:
    mapping = None if config.init_mapping is None else dict(config.init_mapping)
    prefixes = None if mapping is None else sorted(set(mapping.values()))
    source, step = ckpt.load_params(config.init_from, config.init_step, prefixes)
    params, replaced = ckpt.inherit_params(state.params, source, mapping)
    if jax.process_index() == 0:
        print(
            f"initialized {len(replaced)} param arrays from {config.init_from} step {step}",
            flush=True,
        )
    info = {"workdir": str(config.init_from), "step": step, "params": replaced}
    return state.replace(params=params), info


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
        raise FloatingPointError(
            f"non-finite loss or gradients at step {bad} (detected at step {step}); stopped "
            f"without saving it. Last good checkpoint: {kept} in {manager.directory}. "
            "Lower OptimizerConfig.learning_rate or set OptimizerConfig.grad_clip."
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


def is_save_step(step: int, config: RunConfig) -> bool:
    return step % config.checkpoint.every_steps == 0 or step == config.train.num_steps


def is_eval_step(step: int, tc: TrainConfig) -> bool:
    """Periodic evals; the final eval runs after the loop."""
    return bool(tc.eval_every and tc.eval_steps and step % tc.eval_every == 0)


def checkpoint_metadata(base: dict, step: int, config: RunConfig) -> dict:
    """The JSON saved with each checkpoint."""
    return {
        **base,
        "step": step,
        "gin_config": config.gin_config,
        "process_count": jax.process_count(),
    }


def _train_loop(workdir: epath.Path, run: Run, data, iterator, manager, hooks: TrainHooks):
    config, tc = run.config, run.config.train
    primary = jax.process_index() == 0
    state, metadata, round_state = restore_or_init(run, data, iterator, manager)
    start_step = int(jax.device_get(state.step))
    saved_step = metadata["step"]
    flops = flops_per_token(config.model, tc.seq_len)
    peak = peak_flops_per_device(config.peak_flops) * jax.device_count()
    byte_lengths_V = token_byte_lengths(data.tokenizer, config.model.vocab_size)
    guard = FiniteGuard(run)
    throughput = Throughput(tc.tokens_per_step)
    last: dict[str, float] = {}
    if primary:
        print(
            f"training {tc.num_steps} steps from step {start_step} on "
            f"{jax.device_count()} device(s), mesh {dict(run.mesh.shape)}",
            flush=True,
        )
        print(rounds_part.describe_round(config, round_state, len(data.train)), flush=True)
    run_start = time.perf_counter()

    def run_eval(step: int) -> None:
        result = evaluate(run, state.params, data, byte_lengths_V, tc.eval_steps)
        writer.write(step, {**result, "round": round_state.round}, eval_line(result, step))
        last.update(result)

    def next_round(step: int) -> None:
        """Scores with the frozen params, selects the next round and restarts the data."""
        nonlocal round_state
        batches.stop()  # the finished round's batches read ahead are not needed
        round_state, record = rounds_part.next_round(
            run, state.params, data.train, round_state, step, hooks.after_score_batch
        )
        iterator.restart(round_state)
        batches.start()
        line = rounds_part.score_line(record, step, last.get("tokens_per_second"))
        writer.write(step, record, line)
        if primary:
            print(rounds_part.describe_round(config, round_state, len(data.train)), flush=True)

    writer = MetricsWriter(workdir, primary)
    batches = DevicePrefetcher(
        iterator, functools.partial(batch_to_devices, run=run), tc.prefetch_batches
    )
    with (
        contextlib.closing(writer),
        PreemptionWatcher() as preemption,
        run_context(run),
        _running(batches),
    ):
        step_fn = None
        for step in range(start_step, tc.num_steps):
            batch = next(batches)
            if step_fn is None:  # compile ahead of the first step so step times exclude it
                step_fn = _compile(run, state, batch, primary)
                throughput.reset()
            state, metrics = step_fn(state, batch)
            done = step + 1
            guard.update(done, metrics)
            throughput.add_step()
            if hooks.after_step:
                hooks.after_step(done)
            if done % tc.log_every == 0 or done == tc.num_steps:
                guard.check(done, saved_step, manager)
                record = step_record(jax.device_get(metrics), throughput, flops, peak)
                record["round"] = round_state.round
                writer.write(done, record, step_line(record, done, tc.num_steps))
                last.update(record)
                throughput.reset()
            paused = False
            if is_eval_step(done, tc) and done != tc.num_steps:
                run_eval(done)
                paused = True
            # A new round starts right after the last step of the previous one and is saved at
            # once: a resumed run never scores the same params twice.
            new_round = rounds_part.round_at(config, done) > round_state.round
            if new_round:
                guard.check(done, saved_step, manager, state.params)
                next_round(done)
                paused = True
            preempted = preemption.should_stop(done)
            if is_save_step(done, config) or preempted or new_round:
                guard.check(done, saved_step, manager, state.params)
                meta = checkpoint_metadata(metadata, done, config)
                meta["rounds"] = round_state.metadata()
                ckpt.save(manager, state, batches, meta, force=True, rounds=round_state.items())
                saved_step, paused = done, True
                if hooks.after_save:
                    hooks.after_save(done)
            if preempted:
                manager.wait_until_finished()
                if primary:
                    print(f"SIGTERM: saved step {done}; stopping", flush=True)
                raise Preempted(done, ckpt.checkpoint_dir(workdir))
            if paused:  # keep eval and checkpoint time out of the next throughput figure
                throughput.reset()
        if tc.eval_steps:
            run_eval(tc.num_steps)
    manager.wait_until_finished()
    if primary:
        print(
            train_summary(
                workdir,
                last,
                tokens_seen=tc.num_steps * tc.tokens_per_step,
                tokens_this_run=(tc.num_steps - start_step) * tc.tokens_per_step,
                wall_s=time.perf_counter() - run_start,
            ),
            flush=True,
        )
    return last


@contextlib.contextmanager
def _running(batches: DevicePrefetcher):
    batches.start()
    try:
        yield batches
    finally:
        batches.stop()


def _compile(run: Run, state: TrainState, batch, primary: bool):
    start = time.perf_counter()
    compiled = run.train_step.lower(state, batch).compile()
    if primary:
        print(f"compiled the train step in {time.perf_counter() - start:.1f}s", flush=True)
    return compiled
