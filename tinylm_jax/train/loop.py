"""The training loop: data, restore-or-init, then steps, with everything between steps as
hooks (`tinylm_jax.train.hooks`): log, eval, the round switch, preemption, save.

`train(config, workdir)` runs a `RunConfig` in a workdir; each part below is a plain function
or a small class that tests can drive alone. The data schedule (`tinylm_jax.train.rounds`:
multiple rounds, one for a plain run) owns the data iterator and its checkpoint part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable

import jax
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import TrainState, init_state
from tinylm_jax.engine.token_bytes import check_token_bytes, token_bytes_for
from tinylm_jax.errors import DataError, StorageError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.heldout import evaluate
from tinylm_jax.model.counting import flops_per_token
from tinylm_jax.parallel.batch import global_batch_to_devices, to_global
from tinylm_jax.parallel.dispatch import DispatchWindow
from tinylm_jax.parallel.preemption import PreemptionWatcher
from tinylm_jax.train import faults as faults_lib
from tinylm_jax.train import rollback as rollback_lib
from tinylm_jax.train import rounds as rounds_part
from tinylm_jax.train import trackers
from tinylm_jax.train.faults import preemption_hooks
from tinylm_jax.train.hooks import Hook, Hooks, StepInfo, SwitchableIterator, on_step
from tinylm_jax.train.metrics import (
    FiniteGuard,
    MetricsWriter,
    Throughput,
    eval_line,
    peak_flops_per_device,
    step_line,
    step_record,
    train_summary,
)
from tinylm_jax.train.prefetch import DevicePrefetcher
from tinylm_jax.train.profile import profile_hook
from tinylm_jax.train.run_data import (
    check_data,
    make_train_iterator,
    prepare_data_once,
    write_run_files,
)
from tinylm_jax.train.source_tokens import SourceTokens


@dataclasses.dataclass(frozen=True)
class TrainHooks:
    """Callbacks run at fixed points of the loop (tests install them to inject faults; they
    become hooks, so production code has no test switch).

    `after_step(step)` runs right after step `step` is dispatched; `after_save(step)` right
    after its checkpoint save has started (an async save is then still being written);
    `after_score_batch(i)` after batch i of a scoring pass is dispatched; `edit_state(step,
    state)` returns the state to go on from after step `step` (a test makes it non-finite).
    """

    after_step: Callable[[int], None] | None = None
    after_save: Callable[[int], None] | None = None
    after_score_batch: Callable[[int], None] | None = None
    edit_state: Callable[[int, TrainState], TrainState] | None = None


def train(
    config: RunConfig,
    workdir: str | epath.PathLike,
    faults: TrainHooks | None = None,
    profile_steps: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Trains (or resumes) `config` in `workdir`; returns the last logged and eval metrics.

    Resumes from the newest good checkpoint in `workdir`, bit-exactly (same params and losses
    as an uninterrupted run on the same mesh). Without one, starts from
    `CheckpointConfig.init_from`'s params if set, else from a fresh init. Raises `Preempted`
    after saving when SIGTERM arrives (`Terminated`, without a save, during a scoring pass),
    FloatingPointError on a non-finite loss or gradient (its step is never saved).
    `profile_steps` (A, B) traces steps A+1..B with jax.profiler into the workdir's
    TensorBoard dir.
    """
    workdir = epath.Path(workdir)
    trackers.check_available(config.train.trackers)  # before the data and the compile
    data = prepare_data_once(config.data, config.train.seq_len)
    check_data(data, config)
    run = build_run(config, token_bytes_for(config.model, data.tokenizer))
    rounds_part.check_rounds(config, run, len(data.train))
    if jax.process_index() == 0:
        write_run_files(workdir, config, data.tokenizer)
    schedule = rounds_part.Rounds(
        run, data.train, functools.partial(make_train_iterator, data, config.train)
    )
    hooks = Hooks()
    hooks.add_part("rounds", schedule)
    if data.source_names:  # a mixture: tokens drawn per source in every record
        drawn = SourceTokens(data.source_names, config.train.data_sharding == "process")
        hooks.add_part("source_tokens", drawn)
        hooks.add(drawn)
    rollbacks = rollback_lib.Rollbacks(config.train)
    if config.train.on_nonfinite == "rollback":
        hooks.add_part("rollbacks", rollbacks)
    if profile_steps is not None:
        hooks.add(profile_hook(profile_steps, str(layout.tensorboard_dir(workdir))))
    manager = ckpt.make_manager(workdir, config.checkpoint, extras=hooks.part_names)
    progress = faults_lib.Progress()
    hooks.add(progress)
    try:
        result = _train_loop(
            workdir, run, data, schedule, hooks, manager, faults or TrainHooks(), rollbacks
        )
    except BaseException as error:  # SIGTERM's `Terminated` too: the last save completes
        if faults_lib.is_peer_loss(error):  # a save in flight can never complete: no wait
            raise faults_lib.PeerLost(progress.step, manager.directory, error) from error
        if not isinstance(error, StorageError):  # else the failed save would raise again
            manager.wait_until_finished()  # an interrupted run completes its last good save
            manager.close()
        raise
    manager.close()  # waits for the last save
    return result


def batch_to_devices(batch: dict, run: Run) -> dict[str, jax.Array]:
    """A host batch as global arrays on the mesh (the stable record ids stay on the host)."""
    batch = {k: v for k, v in batch.items() if k != "ids"}
    if run.config.train.data_sharding == "process":
        return to_global(batch, run.mesh, run.rules)
    return global_batch_to_devices(batch, run.mesh, run.rules)


def restore_or_init(
    run: Run, data, source: SwitchableIterator, hooks: Hooks, manager
) -> tuple[TrainState, dict]:
    """(state, metadata) of the newest good checkpoint, else of a fresh (or inherited) start;
    the hooks' checkpoint parts take their saved state, then `source` starts on their data."""
    restored = ckpt.restore_latest(
        manager,
        run.abstract,
        run.shardings,
        source,
        set_aside_damaged=True,
        extras=hooks.part_names,
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
        state, metadata, extras = restored
        saved = metadata.get("tokenizer_fingerprint")
        if saved is not None and saved != fingerprint:
            raise DataError(
                f"the checkpoints in {manager.directory} were trained with another tokenizer "
                f"(fingerprint {saved[:16]}, now {fingerprint[:16]}); point DataConfig.tokenizer "
                "at the workdir's tokenizer.model or train in a new --workdir"
            )
        check_token_bytes(metadata, run.model.token_bytes, manager.directory)
        hooks.restore(metadata, extras)
        source.start()
        step = int(jax.device_get(state.step))
        return state, {**metadata, **current, "step": step}
    with run_context(run):
        state = init_state(run.init_fn, run.config.train.seed, run.shardings)
    init_from = None
    if run.config.checkpoint.init_from:
        state, init_from = _init_from(state, run.config.checkpoint)
    hooks.restore({}, {})
    source.start()
    return state, {**current, "init_from": init_from, "step": None}


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
    return dataclasses.replace(state, params=params), info


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


class Saver:
    """The checkpoint-save hook: saves at `CheckpointConfig.every_steps`, at the last step and
    whenever a hook before it asks; never a non-finite state (see `FiniteGuard`)."""

    def __init__(self, run: Run, manager, batches, hooks: Hooks, base: dict, after_save=None):
        self.run, self.manager, self.batches, self.hooks = run, manager, batches, hooks
        self.base, self.after_save = base, after_save
        self.reset(base)

    def reset(self, base: dict) -> None:
        """Starts afresh from the restored checkpoint `base` describes (after a rollback)."""
        self.base, self.saved_step, self.guard = base, base["step"], FiniteGuard(self.run)

    def check(self, info: StepInfo, params: bool = True) -> None:
        """Raises FloatingPointError if a step so far (or, with `params`, the params) is
        non-finite."""
        self.guard.check(
            info.step, self.saved_step, self.manager, info.state.params if params else None
        )

    def __call__(self, info: StepInfo) -> StepInfo:
        if not (info.save or info.preempted or is_save_step(info.step, self.run.config)):
            return info
        self.check(info)
        parts, extras = self.hooks.save()
        metadata = {**checkpoint_metadata(self.base, info.step, self.run.config), **parts}
        try:
            ckpt.save(self.manager, info.state, self.batches, metadata, force=True, extras=extras)
            if info.save:
                # A save a hook asked for (a round switch) holds work a rerun would redo (the
                # scoring pass): it is made durable on every process before training goes on.
                self.manager.wait_until_finished()
        except OSError as error:  # this save, or an earlier async one, could not be written
            raise ckpt.save_failed(self.manager.directory, info.step, error) from error
        self.saved_step = info.step
        if self.after_save:
            self.after_save(info.step)
        return dataclasses.replace(info, paused=True)


def log_hook(
    run: Run,
    saver: Saver,
    writer: MetricsWriter,
    throughput: Throughput,
    tags: Callable[[], dict],
    last: dict,
) -> Hook:
    """Logs the step's metrics every `TrainConfig.log_every` steps and at the last step."""
    tc = run.config.train
    flops = flops_per_token(run.config.model, tc.seq_len)
    peak = peak_flops_per_device(run.config.peak_flops) * jax.device_count()

    def log(info: StepInfo) -> StepInfo:
        if info.step % tc.log_every and info.step != tc.num_steps:
            return info
        saver.check(info, params=False)
        record = step_record(jax.device_get(info.metrics), throughput, flops, peak)
        record.update(tags())
        writer.write(info.step, record, step_line(record, info.step, tc.num_steps))
        last.update(record)
        throughput.reset()
        return info

    return log


def eval_fn(run: Run, data, writer: MetricsWriter, tags: Callable[[], dict], last: dict):
    """`evaluate_at(step, params)`: a held-out eval, logged and kept in `last`."""
    byte_lengths_V = token_byte_lengths(data.tokenizer, run.config.model.vocab_size)

    def evaluate_at(step: int, params) -> None:
        result = evaluate(run, params, data, byte_lengths_V, run.config.train.eval_steps)
        writer.write(step, {**result, **tags()}, eval_line(result, step))
        last.update(result)

    return evaluate_at


def eval_hook(run: Run, evaluate_at: Callable[[int, object], None]) -> Hook:
    """The periodic eval (add it `every=TrainConfig.eval_every`); the final one runs after the
    loop."""

    def periodic_eval(info: StepInfo) -> StepInfo:
        if not is_eval_step(info.step, run.config.train) or info.step == run.config.train.num_steps:
            return info
        evaluate_at(info.step, info.state.params)
        return dataclasses.replace(info, paused=True)

    return periodic_eval


def _train_loop(
    workdir: epath.Path,
    run: Run,
    data,
    schedule: rounds_part.Rounds,
    hooks: Hooks,
    manager,
    faults: TrainHooks,
    rollbacks: rollback_lib.Rollbacks,
) -> dict[str, float]:
    tc, primary = run.config.train, jax.process_index() == 0
    source = SwitchableIterator(schedule.iterator)
    state, metadata = restore_or_init(run, data, source, hooks, manager)
    start_step = int(jax.device_get(state.step))
    if primary:
        print(_start_line(run, start_step), flush=True)
        print(schedule.describe(), flush=True)
    run_start = time.perf_counter()
    last: dict[str, float] = {}
    chosen = trackers.make_trackers(workdir, run.config) if primary else []
    writer = MetricsWriter(workdir, primary, trackers=chosen)
    to_device = functools.partial(batch_to_devices, run=run)
    batches = DevicePrefetcher(source, to_device, tc.prefetch_batches, hooks.describe_batch)
    throughput = Throughput(tc.tokens_per_step)
    saver = Saver(run, manager, batches, hooks, metadata, faults.after_save)
    evaluate_at = eval_fn(run, data, writer, hooks.tags, last)
    with (
        contextlib.closing(writer),
        PreemptionWatcher() as preemption,
        run_context(run),
        _running(batches),
    ):
        ask, stop = preemption_hooks(preemption, manager, workdir)
        _add_fault_hooks(hooks, faults)
        hooks.add(log_hook(run, saver, writer, throughput, hooks.tags, last))
        if tc.eval_every and tc.eval_steps:
            hooks.add(eval_hook(run, evaluate_at), every=tc.eval_every)
        scoring = faults_lib.scoring_stop(preemption, manager.directory, faults.after_score_batch)
        switch = rounds_part.switch_hook(
            schedule, source, batches, writer, check=saver.check, last=last,
            after_score_batch=scoring,
        )  # fmt: skip
        for hook in (switch, ask, saver, stop):
            hooks.add(hook)

        restarter = rollback_lib.Restarter(
            functools.partial(restore_or_init, run, data, source, hooks, manager),
            manager,
            source,
            batches,
            saver,
            writer,
            hooks.tags,
        )
        state = rollback_lib.run_with_rollbacks(
            rollbacks,
            lambda state, start: _run_steps(
                run, state, batches, hooks, throughput, saver.guard, start
            ),
            restarter,
            state,
            start_step,
        )
        if tc.eval_steps:
            evaluate_at(tc.num_steps, state.params)
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


def _start_line(run: Run, start_step: int) -> str:
    model = run.config.model
    return (
        f"training {run.config.train.num_steps} steps from step {start_step} on "
        f"{jax.device_count()} device(s), mesh {dict(run.mesh.shape)}, compute dtype "
        f"{model.resolved_dtype} (params {model.param_dtype})"
    )


def _add_fault_hooks(hooks: Hooks, faults: TrainHooks) -> None:
    """The test hooks that inject faults: after each step, and a replacement of the state."""
    if faults.after_step:
        hooks.add(on_step(faults.after_step))
    if faults.edit_state:
        edit = faults.edit_state
        hooks.add(lambda info: dataclasses.replace(info, state=edit(info.step, info.state)))


def _run_steps(
    run: Run,
    state: TrainState,
    batches: DevicePrefetcher,
    hooks: Hooks,
    throughput: Throughput,
    guard: FiniteGuard,
    start_step: int,
) -> TrainState:
    """Steps `start_step + 1` to `TrainConfig.num_steps`, each followed by the hooks."""
    step_fn = None
    window = DispatchWindow()  # a few steps in flight: see `tinylm_jax.parallel.dispatch`
    for step in range(start_step, run.config.train.num_steps):
        batch = next(batches)
        if step_fn is None:  # compile ahead of the first step so step times exclude it
            step_fn = _compile(run, state, batch, jax.process_index() == 0)
            throughput.reset()
        state, metrics = step_fn(state, batch)
        guard.update(step + 1, metrics)
        window.push(metrics)
        throughput.add_step()
        info = hooks.run(StepInfo(step + 1, state, metrics, batch_info=batches.batch_info))
        state = info.state
        if info.paused:  # keep eval and checkpoint time out of the next throughput figure
            throughput.reset()
    return state


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
