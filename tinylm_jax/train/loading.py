"""Loading a trained workdir (its config.gin, tokenizer and latest params) for eval and sampling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax

from tinylm_jax.data import pipeline
from tinylm_jax.data.config import DataConfig
from tinylm_jax.data.errors import DataError
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.eval import multiple_choice
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.generate import SamplingConfig, generate
from tinylm_jax.model.config import ConfigError
from tinylm_jax.train import checkpoint as ckpt
from tinylm_jax.train.loop import Run, build_run, evaluate, run_context


def load_workdir(workdir: str | Path) -> tuple[Run, dict, Tokenizer]:
    """The run built from the parsed gin config, the newest params, and the run's tokenizer."""
    workdir = Path(workdir)
    run = build_run()
    manager = ckpt.make_manager(workdir, ckpt.CheckpointConfig())
    restored = ckpt.restore_latest(manager, run.abstract, run.shardings, data_iterator=None)
    manager.close()
    if restored is None:
        raise ConfigError(f"no checkpoint in {ckpt.checkpoint_dir(workdir)}; train first")
    tokenizer_path = workdir / "tokenizer.model"
    if not tokenizer_path.exists():
        raise DataError(f"{tokenizer_path} is missing; it is written by `tinylm train`")
    return run, restored[0].params, Tokenizer.from_file(str(tokenizer_path))


def evaluate_workdir(
    workdir: str | Path, eval_steps: int | None, task_paths: Sequence[str] = ()
) -> dict:
    """Held-out loss / perplexity / bits per byte (skipped when `eval_steps` is 0), plus
    `tasks`: {name: {acc, acc_norm, n}} for each multiple-choice JSONL task given."""
    if eval_steps == 0 and not task_paths:
        raise ConfigError("nothing to evaluate: --eval_steps=0 skips held-out eval; add --task")
    tasks = [multiple_choice.load_task(p) for p in task_paths]  # fail before loading a model
    names = [t.name for t in tasks]
    run, params, tokenizer = load_workdir(workdir)
    result: dict = {}
    if eval_steps != 0:
        result.update(_heldout(workdir, run, params, tokenizer, eval_steps))
    if tasks:
        result["tasks"] = {
            (t.name if names.count(t.name) == 1 else str(p)): multiple_choice.score_task(
                run, params, tokenizer, t
            )
            for t, p in zip(tasks, task_paths, strict=True)
        }
    return result


def _heldout(workdir, run: Run, params, tokenizer: Tokenizer, eval_steps: int | None) -> dict:
    data = pipeline.prepare_data(DataConfig(), run.train_config.seq_len)
    pipeline.check_vocab(data.tokenizer, run.model_config.vocab_size)
    if data.tokenizer.fingerprint != tokenizer.fingerprint:
        raise DataError(
            f"the data config's tokenizer ({data.tokenizer.path}) is not the one "
            f"{workdir} was trained with; point DataConfig.tokenizer at "
            f"{Path(workdir) / 'tokenizer.model'}"
        )
    byte_lengths = token_byte_lengths(tokenizer.path, run.model_config.vocab_size)
    return evaluate(run, params, data, byte_lengths, eval_steps)


def sample_workdir(
    workdir: str | Path,
    prompts: list[str],
    sampling: SamplingConfig,
) -> list[dict]:
    run, params, tokenizer = load_workdir(workdir)
    encoded = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
    with run_context(run):
        completions = generate(
            run.model,
            jax.device_get(params),
            encoded,
            sampling,
            eos_id=tokenizer.eos_id,
            pad_id=tokenizer.pad_id,
        )
    return [
        {"prompt": p, "completion": tokenizer.decode(ids), "completion_ids": ids}
        for p, ids in zip(prompts, completions, strict=True)
    ]
