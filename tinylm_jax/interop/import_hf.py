"""`tinylm import-hf`: a local Llama-family Hugging Face checkpoint as a tinylm workdir.

The workdir is what `tinylm train` writes: `config.gin` (ModelConfig from the HF config.json,
plus `DataConfig.tokenizer` pointing at the copied `tokenizer.model`), `tokenizer.model` and an
Orbax checkpoint at step 0 whose optimizer state is freshly initialized. `tinylm sample/eval`
read it as is; `tinylm train --workdir=DIR` continues pretraining from it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import numpy as np

from tinylm_jax.config import RunConfig
from tinylm_jax.data.tokenizer import Tokenizer, check_vocab
from tinylm_jax.errors import ConfigError
from tinylm_jax.interop import llama, safetensors_io
from tinylm_jax.run import build_run
from tinylm_jax.workdir import check_new_workdir, write_initial_workdir

log = logging.getLogger(__name__)


def read_hf_config(hf_dir: str | Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{path} not found: --hf_dir must be a Hugging Face model directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error})") from None


def gin_bindings(hf_dir: str | Path, workdir: str | Path) -> tuple[list[str], list[str]]:
    """(defaults the user may override, ModelConfig bindings that must match the checkpoint)."""
    fields = llama.model_fields(read_hf_config(hf_dir), str(Path(hf_dir) / "config.json"))
    model = [f"ModelConfig.{k} = {v!r}" for k, v in fields.items()]
    defaults = []
    if (Path(hf_dir) / "tokenizer.model").exists():
        tokenizer = (Path(workdir) / "tokenizer.model").absolute()
        defaults.append(f"DataConfig.tokenizer = {str(tokenizer)!r}")
    return defaults, model


def import_hf(config: RunConfig, hf_dir: str | Path, workdir: str | Path) -> dict:
    """Writes the workdir; `config` must hold `gin_bindings(hf_dir, workdir)` (and overrides)."""
    hf_dir = Path(hf_dir)
    check_new_workdir(workdir)
    reader = safetensors_io.TensorReader(hf_dir)
    run = build_run(config)
    params = llama.from_hf(reader.names, reader.read, config.model, str(hf_dir))
    tokenizer_path = hf_dir / "tokenizer.model"
    tokenizer = None
    if tokenizer_path.exists():
        tokenizer = Tokenizer.from_file(tokenizer_path)
        check_vocab(tokenizer, config.model.vocab_size)
    else:
        log.warning(
            "%s has no SentencePiece tokenizer.model; put one at %s before `tinylm sample`, "
            "`eval` or `train` (and bind DataConfig.tokenizer to it)",
            hf_dir,
            Path(workdir) / "tokenizer.model",
        )
    metadata = {
        "tokenizer_fingerprint": tokenizer.fingerprint if tokenizer else None,
        "imported_from": str(hf_dir.absolute()),
    }
    write_initial_workdir(
        run, params, workdir, str(tokenizer_path) if tokenizer else None, metadata
    )
    return {
        "workdir": str(workdir),
        "params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
        "tokenizer": str(Path(workdir) / "tokenizer.model") if tokenizer else None,
    }
