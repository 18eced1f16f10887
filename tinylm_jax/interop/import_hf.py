"""`tinylm import-hf`: a local Llama-family Hugging Face checkpoint as a tinylm workdir.

The workdir is what `tinylm train` writes: `config.gin` (ModelConfig from the HF config.json,
plus `DataConfig.tokenizer` pointing at the copied tokenizer), the checkpoint's tokenizer (a
SentencePiece `tokenizer.model` when it has one, else `tokenizer.json` with the special tokens
its `tokenizer_config.json` / `special_tokens_map.json` / `generation_config.json` declare) and
an Orbax checkpoint at step 0 whose optimizer state is freshly initialized. `tinylm
sample/eval/export-hf/inherit` read it as is; `tinylm train --workdir=DIR` continues
pretraining from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from tinylm_jax.config.run import RunConfig
from tinylm_jax.data.tokenizer import HF_FILE, SP_FILE, Tokenizer, check_vocab, load_tokenizer
from tinylm_jax.engine.run import build_run
from tinylm_jax.errors import ConfigError
from tinylm_jax.interop import llama, safetensors_io
from tinylm_jax.workdir.load import check_new_workdir, write_initial_workdir

log = logging.getLogger(__name__)


def read_hf_config(hf_dir: str | Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{path} not found: --hf_dir must be a Hugging Face model directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error})") from None


def read_tokenizer(hf_dir: str | Path) -> Tokenizer | None:
    """The checkpoint's tokenizer (`tokenizer.model` first), or None when it has neither file."""
    if not any((Path(hf_dir) / name).exists() for name in (SP_FILE, HF_FILE)):
        return None
    return load_tokenizer(hf_dir)


def gin_bindings(hf_dir: str | Path, workdir: str | Path) -> tuple[list[str], list[str]]:
    """(defaults the user may override, ModelConfig bindings that must match the checkpoint)."""
    fields = llama.model_fields(read_hf_config(hf_dir), str(Path(hf_dir) / "config.json"))
    model = [f"ModelConfig.{k} = {v!r}" for k, v in fields.items()]
    defaults = []
    tokenizer = read_tokenizer(hf_dir)
    if tokenizer is not None:
        path = (Path(workdir) / tokenizer.file_name).absolute()
        defaults.append(f"DataConfig.tokenizer = {str(path)!r}")
    return defaults, model


def run_bindings(hf_dir: str | Path, workdir: str | Path, overrides: Sequence[str]) -> list[str]:
    """The gin bindings of the imported run: `gin_bindings`' defaults, then `overrides` (the
    user's), then the ModelConfig bindings last, since the checkpoint fixes the architecture."""
    defaults, model = gin_bindings(hf_dir, workdir)
    return [*defaults, *overrides, *model]


def import_hf(config: RunConfig, hf_dir: str | Path, workdir: str | Path) -> dict:
    """Writes the workdir; `config` must hold `gin_bindings(hf_dir, workdir)` (and overrides)."""
    hf_dir = Path(hf_dir)
    check_new_workdir(workdir)
    reader = safetensors_io.TensorReader(hf_dir)
    run = build_run(config)
    params = llama.from_hf(reader.names, reader.read, config.model, str(hf_dir))
    tokenizer = read_tokenizer(hf_dir)
    if tokenizer is not None:
        check_vocab(tokenizer, config.model.vocab_size)
    else:
        log.warning(
            "%s has neither a SentencePiece tokenizer.model nor a tokenizer.json; put one into "
            "%s before `tinylm sample`, `eval` or `train` (and bind DataConfig.tokenizer to it)",
            hf_dir,
            workdir,
        )
    metadata = {
        "tokenizer_fingerprint": tokenizer.fingerprint if tokenizer else None,
        "imported_from": str(hf_dir.absolute()),
    }
    write_initial_workdir(run, params, workdir, tokenizer, metadata)
    return {
        "workdir": str(workdir),
        "params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
        "tokenizer": str(Path(workdir) / tokenizer.file_name) if tokenizer else None,
    }
