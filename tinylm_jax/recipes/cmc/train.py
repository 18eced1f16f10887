"""`tinylm cmc train`: a delta model trained beside a frozen template (arXiv 2410.17599,
Sec. 3), resumable like `tinylm train`.

The delta workdir is an ordinary workdir (`config.gin`, the template's tokenizer,
`checkpoints/`, `metrics.jsonl`) plus `cmc.json`, so `sample`, `eval` and `export-hf` read it
as a small model in its own right. The template's params are restored onto the delta run's
mesh with the template's own sharding rules and enter the jitted step read-only. SIGTERM
saves the step it arrives after and stops (exit 143), as in `tinylm train`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time

import jax
import numpy as np
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.run import RunConfig
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import TrainState, init_state, state_from_params
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.files import write_atomically
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.batch import global_batch_to_devices
from tinylm_jax.parallel.preemption import PreemptionWatcher
from tinylm_jax.recipes.cmc.data import Rows, batch_at, encode_rows, load_records
from tinylm_jax.recipes.cmc.step import cmc_train_step
from tinylm_jax.train.faults import Preempted
from tinylm_jax.train.loop import TrainHooks
from tinylm_jax.train.metrics import MetricsWriter
from tinylm_jax.workdir.load import load_workdir, tokenizer_of


def check_models(delta: RunConfig, template: RunConfig) -> None:
    """The delta must predict the template's vocabulary with a token head."""
    for name, config in (("delta", delta), ("template", template)):
        if config.model.output_head != "tokens":
            raise ConfigError(f"the {name} model needs ModelConfig.output_head = 'tokens'")
    if delta.model.vocab_size != template.model.vocab_size:
        raise ConfigError(
            f"the delta's ModelConfig.vocab_size={delta.model.vocab_size} differs from the "
            f"template's {template.model.vocab_size}; the delta shares the template's tokenizer"
        )
    if delta.train.microbatches != 1:
        raise ConfigError("cmc train takes TrainConfig.microbatches = 1")


def template_on_mesh(template: RunConfig, delta: RunConfig) -> RunConfig:
    """The template's model on the delta run's mesh, rules and batch shape."""
    return template.replace(mesh=delta.mesh, train=delta.train, rounds=delta.rounds)


def load_template(template: RunConfig, delta: RunConfig, template_dir) -> tuple[Run, dict]:
    """The template's run on the delta's mesh and its newest params there. Only the params
    are read (no optimizer moments), straight onto their shardings from the host copy."""
    run = build_run(template_on_mesh(template, delta))
    host, step = ckpt.load_params(template_dir)
    want = jax.tree.map(lambda a: a.shape, run.abstract.params)
    have = jax.tree.map(lambda a: a.shape, host)
    if want != have:
        raise ConfigError(
            f"the checkpoint at step {step} of {template_dir} does not hold the params its "
            "config.gin describes; pass a workdir written by train, import-hf or inherit"
        )
    params = jax.tree.map(lambda a, s: np.asarray(a, s.dtype), host, run.abstract.params)
    return run, jax.device_put(params, run.shardings.params)


def cmc_train(
    config: RunConfig,
    template_config: RunConfig,
    template_dir: epath.PathLike,
    workdir: epath.PathLike,
    data_path: epath.PathLike,
    delta_init: tuple[RunConfig, str] | None = None,
    faults: TrainHooks | None = None,
) -> dict[str, float]:
    """Trains (or resumes) the delta of `config` in `workdir`; returns the last metrics.

    `delta_init`: (config, workdir) of a trained small model whose params start the delta.
    """
    workdir, faults = epath.Path(workdir), faults or TrainHooks()
    check_models(config, template_config)
    records = load_records(data_path)  # user errors before any weights load
    tokenizer = tokenizer_of(template_dir)
    _check_workdir(workdir, tokenizer, template_dir)
    rows = encode_rows(records, tokenizer, config.train.seq_len)
    template_run, template_params = load_template(template_config, config, template_dir)
    run = build_run(config)
    if jax.process_index() == 0:
        _write_run_files(workdir, config, tokenizer, template_dir)
    manager = ckpt.make_manager(workdir, config.checkpoint)
    try:
        state, start = _restore_or_init(run, manager, delta_init)
        return _loop(run, template_run, template_params, rows, state, start, manager, faults)
    finally:
        manager.wait_until_finished()
        manager.close()


def _check_workdir(workdir: epath.Path, tokenizer: Tokenizer, template_dir) -> None:
    """A resumed delta must have been trained beside a template with this tokenizer."""
    path = layout.cmc_file(workdir)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["tokenizer_fingerprint"] != tokenizer.fingerprint:
            raise DataError(
                f"{workdir} was trained beside {saved['template']}, whose tokenizer differs "
                f"from {template_dir}'s; pass that --template or a new --workdir"
            )


def _write_run_files(workdir: epath.Path, config: RunConfig, tokenizer: Tokenizer, template):
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomically(layout.config_file(workdir), config.gin_config)
    tokenizer.save(workdir)
    info = {"template": str(template), "tokenizer_fingerprint": tokenizer.fingerprint}
    write_atomically(layout.cmc_file(workdir), json.dumps(info, indent=1))


def _restore_or_init(
    run: Run, manager, delta_init: tuple[RunConfig, str] | None
) -> tuple[TrainState, int]:
    restored = ckpt.restore_latest(
        manager, run.abstract, run.shardings, None, set_aside_damaged=True
    )
    if restored is not None:
        state = restored[0]
        return state, int(jax.device_get(state.step))
    if delta_init is not None:
        init_config, init_dir = delta_init
        if init_config.model != run.config.model:
            raise ConfigError(
                f"--delta_init={init_dir} holds another ModelConfig than the delta's; "
                "leave ModelConfig bindings out (the delta takes that workdir's model)"
            )
        _, params = load_workdir(init_config.replace(mesh=run.config.mesh), init_dir)[:2]
        with run_context(run):
            return state_from_params(params, run.tx, run.shardings), 0
    with run_context(run):
        return init_state(run.init_fn, run.config.train.seed, run.shardings), 0


def compiled_step(run: Run, template_run: Run):
    """`step(delta_state, template_params, batch) -> (delta_state, metrics)`, jitted on the
    delta run's mesh with each model's own param shardings (the delta's state is donated)."""
    step = functools.partial(
        cmc_train_step,
        template=template_run.model,
        delta=run.model,
        tx=run.tx,
        schedule=run.schedule,
        config=run.config.cmc,
    )
    replicated = rules_lib.replicated(run.mesh)
    batch = rules_lib.batch_sharding(run.mesh, run.rules)
    return jax.jit(
        step,
        in_shardings=(run.shardings, template_run.shardings.params, batch),
        out_shardings=(run.shardings, replicated),
        donate_argnums=0,
    )


def _loop(run, template_run, template_params, rows: Rows, state, start, manager, faults):
    tc, primary = run.config.train, jax.process_index() == 0
    if start >= tc.num_steps:
        return {}
    writer = MetricsWriter(epath.Path(manager.directory).parent, primary)
    last: dict[str, float] = {}

    def batch(step: int):
        host = batch_at(rows, step, tc.batch_size, tc.resolved_data_seed)
        return global_batch_to_devices(host, run.mesh, run.rules)

    with contextlib.closing(writer), run_context(run):
        # Compiled ahead: a SIGTERM meanwhile stops at once (there is no new step to save).
        lowered = compiled_step(run, template_run).lower(state, template_params, batch(start))
        step_fn = lowered.compile()
        if primary:
            print(f"cmc: training the delta {tc.num_steps} steps from step {start}", flush=True)
        clock = [time.perf_counter(), start]  # (time, step) of the last log line
        with PreemptionWatcher() as preemption:
            for step in range(start, tc.num_steps):
                state, metrics = step_fn(state, template_params, batch(step))
                done = step + 1
                if faults.after_step:
                    faults.after_step(done)
                if done % tc.log_every == 0 or done == tc.num_steps:
                    last = _log(writer, done, metrics, run, clock)
                preempted = preemption.should_stop(done)  # SIGTERM: save this step, then stop
                due = done % run.config.checkpoint.every_steps == 0 or done == tc.num_steps
                if preempted or due:
                    _save(manager, state, metrics, done, run.config, faults.after_save)
                if preempted:
                    manager.wait_until_finished()
                    raise Preempted(done, manager.directory)
    return last


def _save(manager, state, metrics, step: int, config: RunConfig, after_save) -> None:
    _check_finite(jax.device_get(metrics), step)  # never save a non-finite state
    ckpt.save(manager, state, None, {"step": step, "gin_config": config.gin_config}, force=True)
    if after_save:
        after_save(step)


def _check_finite(values: dict, step: int) -> None:
    if not all(math.isfinite(float(v)) for v in values.values()):
        raise FloatingPointError(f"cmc train: a non-finite loss or gradient at step {step}")


def _log(writer: MetricsWriter, step: int, metrics, run: Run, clock: list) -> dict:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    _check_finite(values, step)
    now = time.perf_counter()
    tokens = (step - clock[1]) * run.config.train.tokens_per_step
    record = {**values, "tokens_per_second": tokens / max(now - clock[0], 1e-9)}
    clock[:] = [now, step]
    line = (
        f"step {step}/{run.config.train.num_steps} loss {values['loss']:.4f} retain "
        f"{values['retain_loss']:.4f} forget {values['forget_loss']:.4f}"
    )
    writer.write(step, record, line)
    return record
