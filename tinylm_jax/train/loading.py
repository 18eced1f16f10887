"""Loading a trained workdir (its config.gin, tokenizer and latest params) for eval and sampling."""

from __future__ import annotations

from pathlib import Path

import jax

from tinylm_jax.data import pipeline
from tinylm_jax.data.config import DataConfig
from tinylm_jax.data.errors import DataError
from tinylm_jax.data.tokenizer import Tokenizer
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


def evaluate_workdir(workdir: str | Path, eval_steps: int | None) -> dict[str, float]:
    run, params, tokenizer = load_workdir(workdir)
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
