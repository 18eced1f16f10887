"""A run's workdir as the commands use it: load its params for eval, sampling and export;
write a step-0 workdir around given params (import, inheritance).

A workdir holds `config.gin` (the operative config), its tokenizer (`tokenizer.model`, or
`tokenizer.json` with `tokenizer_config.json`), `checkpoints/` (Orbax), `metrics.jsonl` and
`tensorboard/`; any path may be local or gs://.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import jax
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import state_from_params
from tinylm_jax.engine.token_bytes import check_token_bytes, token_bytes_for
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.eval import multiple_choice
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.generate import generate
from tinylm_jax.eval.generate_cross import generate_across
from tinylm_jax.eval.generate_delta import generate_with_delta
from tinylm_jax.eval.heldout import evaluate
from tinylm_jax.eval.score import Scores, score_records, write_scores
from tinylm_jax.files import write_atomically
from tinylm_jax.parallel import preemption
from tinylm_jax.parallel.mesh import make_mesh
from tinylm_jax.parallel.rules import batch_shards
from tinylm_jax.workdir.delta import AppliedDelta, DeltaFlags, apply_delta, check_delta


def config_path(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/config.gin`, which must exist: it says how the run was configured."""
    path = layout.config_file(workdir)
    if not path.exists():
        raise ConfigError(
            f"{path} not found: --workdir must be a directory written by `tinylm train`, "
            "`tinylm import-hf` or `tinylm inherit`"
        )
    return path


def tokens_per_step(workdir: epath.PathLike) -> int:
    """Global batch × sequence length of the run in `workdir`, from its saved config (the
    metrics log counts steps; this turns them into tokens seen)."""
    return config_lib.parse(workdir_config=config_path(workdir)).train.tokens_per_step


def tokenizer_of(workdir: epath.PathLike) -> Tokenizer:
    """The workdir's tokenizer (`tokenizer.model` or `tokenizer.json`)."""
    workdir = epath.Path(workdir)
    if not any((workdir / name).exists() for name in ("tokenizer.model", "tokenizer.json")):
        raise DataError(
            f"{workdir} holds no tokenizer.model or tokenizer.json; `tinylm train`, "
            "`import-hf` and `inherit` write one"
        )
    return load_tokenizer(workdir)


def load_workdir(config: RunConfig, workdir: epath.PathLike) -> tuple[Run, dict, Tokenizer]:
    """The run of `config`, the newest good params of `workdir` on its mesh, its tokenizer
    (and, for byte-level models, the token byte table rebuilt from it and checked against the
    checkpoint's fingerprint)."""
    tokenizer = tokenizer_of(workdir)
    run = build_run(config, token_bytes_for(config.model, tokenizer))
    manager = ckpt.make_manager(workdir, config.checkpoint)
    try:
        restored = ckpt.restore_latest(manager, run.abstract, run.shardings, data_iterator=None)
    finally:
        manager.close()
    if restored is None:
        raise ConfigError(f"no checkpoint in {ckpt.checkpoint_dir(workdir)}; train first")
    check_token_bytes(restored[1], run.model.token_bytes, ckpt.checkpoint_dir(workdir))
    return run, restored[0].params, tokenizer


def load_workdir_for_requests(
    workdir: epath.PathLike, gin_params: Sequence[str] = (), batch_size: int | None = None
) -> tuple[Run, dict, Tokenizer]:
    """`load_workdir` under the workdir's own config (plus `gin_params`), scoring and
    generating `batch_size` requests at a time (None: `TrainConfig.eval_batch_size`), rounded
    up to a multiple of the devices a batch splits over (the extra rows are padding)."""
    config = config_lib.parse(gin_params=gin_params, workdir_config=config_path(workdir))
    if batch_size is not None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size}")
        shards = batch_shards(make_mesh(config.mesh), config.rules)
        rounded = -(-batch_size // shards) * shards
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, eval_batch_size=rounded)
        )
    return load_workdir(config, workdir)


def load_with_delta(
    config: RunConfig, workdir: epath.PathLike, delta: DeltaFlags | None
) -> tuple[Run, object, Tokenizer, AppliedDelta | None]:
    """`load_workdir`, and with `delta` (checked before any weights load) the run whose eval
    and score steps use the combined logits, params as (model's, delta's), the loaded delta."""
    checked = None if delta is None else check_delta(delta, tokenizer_of(workdir))
    run, params, tokenizer = load_workdir(config, workdir)
    if checked is None:
        return run, params, tokenizer, None
    run, pair, applied = apply_delta(run, params, checked)
    return run, pair, tokenizer, applied


def evaluate_workdir(
    config: RunConfig,
    workdir: epath.PathLike,
    eval_steps: int | None,
    task_paths: Sequence[str] = (),
    delta: DeltaFlags | None = None,
) -> dict:
    """Held-out loss / perplexity / bits per byte (skipped when `eval_steps` is 0), plus
    `tasks`: {name: {acc, acc_norm, n}} for each multiple-choice JSONL task given; with
    `delta`, under the combined logits."""
    if eval_steps == 0 and not task_paths:
        raise ConfigError("nothing to evaluate: --eval_steps=0 skips held-out eval; add --task")
    tasks = [multiple_choice.load_task(p) for p in task_paths]  # fail before loading a model
    names = [t.name for t in tasks]
    run, params, tokenizer, _ = load_with_delta(config, workdir, delta)
    result: dict = {}
    if eval_steps != 0:
        logging.info("held-out eval of %s", workdir)
        result.update(_heldout(workdir, run, params, tokenizer, eval_steps))
    if tasks:
        result["tasks"] = {
            (t.name if names.count(t.name) == 1 else str(p)): multiple_choice.score_task(
                run, params, tokenizer, t
            )
            for t, p in zip(tasks, task_paths, strict=True)
        }
    return result


def _data_of(workdir, run: Run, tokenizer: Tokenizer) -> pipeline.PreparedData:
    """The run's packed data, which must be tokenized as `workdir` was trained."""
    data = pipeline.prepare_data(run.config.data, run.config.train.seq_len)
    pipeline.check_vocab(data.tokenizer, run.config.model.vocab_size)
    if data.tokenizer.fingerprint != tokenizer.fingerprint:
        raise DataError(
            f"the data config's tokenizer ({data.tokenizer.path}) is not the one "
            f"{workdir} was trained with; point DataConfig.tokenizer at {workdir}"
        )
    return data


def _heldout(workdir, run: Run, params, tokenizer: Tokenizer, eval_steps: int | None) -> dict:
    data = _data_of(workdir, run, tokenizer)
    byte_lengths = token_byte_lengths(tokenizer, run.config.model.vocab_size)
    return evaluate(run, params, data, byte_lengths, eval_steps)


def score_workdir(
    config: RunConfig,
    workdir: epath.PathLike,
    split: str,
    batch_size: int | None = None,
    delta: DeltaFlags | None = None,
) -> Scores:
    """Every record's loss in `split` ('train' or 'validation') under `workdir`'s newest
    params (with `delta`: the combined logits), `batch_size` (global) rows at a time (None:
    the eval batch size)."""
    run, params, tokenizer, _ = load_with_delta(config, workdir, delta)
    data = _data_of(workdir, run, tokenizer)
    source = {"train": data.train, "validation": data.validation}[split]
    return score_records(run, params, source, batch_size or config.train.resolved_eval_batch_size)


def write_workdir_scores(
    config: RunConfig,
    workdir: epath.PathLike,
    split: str,
    out: epath.PathLike,
    batch_size: int | None = None,
    delta: DeltaFlags | None = None,
) -> dict | None:
    """`score_workdir`, written by process 0 to `out` (JSONL: id, loss, tokens); returns, on
    process 0 only, a summary: out, split, records, tokens, mean_loss (nats per token),
    seconds, tokens_per_second."""
    scores = score_workdir(config, workdir, split, batch_size, delta)
    if jax.process_index() != 0:
        return None
    write_scores(out, scores)
    return {
        "out": out,
        "split": split,
        "records": len(scores.tokens_N),
        "tokens": int(scores.tokens_N.sum()),
        "mean_loss": float(scores.nll_N.sum() / max(scores.tokens_N.sum(), 1)),
        "seconds": scores.seconds,
        "tokens_per_second": scores.tokens_per_second,
    }


def sample_workdir(
    config: RunConfig,
    workdir: epath.PathLike,
    prompts: list[str],
    sampling: SamplingConfig,
    delta: DeltaFlags | None = None,
) -> list[dict]:
    run, params, tokenizer, applied = load_with_delta(config, workdir, delta)
    encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
    # Decoding is small: one host copy of the params, no sharded cache.
    with run_context(run):
        if applied is None:
            completions = generate(
                run.model,
                jax.device_get(params),
                encoded,
                sampling,
                eos_id=tokenizer.eos_id,
                pad_id=tokenizer.pad_id,
            )
        else:
            models, cmc = (run.model, applied.run.model), applied.run.config.cmc
            if applied.cross is None:
                completions = generate_with_delta(
                    models,
                    jax.device_get(params),
                    encoded,
                    sampling,
                    tokenizer.eos_id,
                    cmc.normalization,
                    cmc.alpha,
                    pad_id=tokenizer.pad_id,
                )
            else:
                completions = generate_across(
                    models,
                    jax.device_get(params),
                    prompts,
                    applied.cross,
                    sampling,
                    cmc.normalization,
                    cmc.alpha,
                )
    return [
        {"prompt": p, "completion": continuation_text(tokenizer, ids), "completion_ids": ids}
        for p, ids in zip(prompts, completions, strict=True)
    ]


def continuation_text(tokenizer: Tokenizer, ids: list[int]) -> str:
    """The text `ids` add after a prompt: their bytes in order, released a whole character at
    a time, so a character split across byte-level tokens comes out whole and one cut off by
    --max_new_tokens ends the text as U+FFFD. Unlike `decode`, a leading space survives (a
    dummy-prefix decoder strips it from the start of a document, which a completion is not)."""
    decoder = tokenizer.incremental_decoder()
    return "".join(decoder.push(i) for i in ids) + decoder.flush()


def check_new_workdir(workdir: epath.PathLike) -> None:
    """Fails if `workdir` already holds a checkpoint (call it before expensive work); an
    unfinished save of an interrupted run is no checkpoint, and the next save clears it."""
    if ckpt.complete_steps(ckpt.checkpoint_dir(workdir)):
        raise ConfigError(f"{workdir} already holds checkpoints; choose a new --workdir")


def write_initial_workdir(
    run: Run, params: dict, workdir: epath.PathLike, tokenizer: Tokenizer | None, metadata: dict
) -> None:
    """A workdir that `train` continues from step 0 (fresh optimizer state) and that `eval`,
    `sample` and `export-hf` read: `config.gin` (the run's), the tokenizer's files (when given)
    and a step-0 checkpoint of `params` (a nested dict of arrays in the run's param layout).
    The checkpoint and `config.gin` are written with SIGTERM held back: a workdir has both
    or, interrupted before, neither (and a rerun writes it afresh)."""
    workdir = epath.Path(workdir)
    check_new_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:
        tokenizer.save(workdir)
    with run_context(run):
        state = state_from_params(params, run.tx, run.shardings)
    with preemption.deferred():
        manager = ckpt.make_manager(workdir, run.config.checkpoint)
        try:
            ckpt.save(manager, state, None, metadata, force=True)
            manager.wait_until_finished()
        finally:
            manager.close()
        write_atomically(layout.config_file(workdir), run.config.gin_config)
