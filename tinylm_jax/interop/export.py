"""`tinylm export-hf`: a workdir's newest params as a Hugging Face `LlamaForCausalLM` directory."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jax

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data.tokenizer import SentencePieceTokenizer, Tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.errors import ConfigError
from tinylm_jax.interop import hf_tokenizer, llama, safetensors_io
from tinylm_jax.workdir.load import tokenizer_of


def export_params(
    params: Mapping,
    config: ModelConfig,
    tokenizer: Tokenizer,
    out_dir: str | Path,
    max_shard_bytes: int = 4 * 1024**3,
) -> list[str]:
    """Writes config.json, generation_config.json, safetensors and tokenizer files; their names."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} is not empty; choose a new --out directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(
            f"tokenizer has {tokenizer.vocab_size} pieces but ModelConfig.vocab_size is "
            f"{config.vocab_size}"
        )
    model_config = llama.hf_config(config, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    generation_config = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }
    for name, content in (
        ("config.json", model_config),
        ("generation_config.json", generation_config),
    ):
        (out_dir / name).write_text(json.dumps(content, indent=2) + "\n")
    tensors = llama.to_hf(jax.device_get(params), config)
    files = safetensors_io.write_tensors(tensors, out_dir, max_shard_bytes)
    if isinstance(tokenizer, SentencePieceTokenizer):
        files += hf_tokenizer.write_hf_tokenizer(tokenizer, out_dir, config.max_seq_len)
    else:  # a tokenizer.json: the very same files, which `AutoTokenizer` loads as they are
        files += tokenizer.save(out_dir)
    return ["config.json", "generation_config.json", *files]


def export_workdir(config: ModelConfig, workdir: str | Path, out_dir: str | Path) -> list[str]:
    """Exports the newest params of `workdir`, a run of model `config`.

    Reads only the params (no optimizer state, no mesh), so it needs little memory.
    """
    llama.check_exportable(config)  # before reading any checkpoint
    params, _ = ckpt.load_params(workdir)
    return export_params(params, config, tokenizer_of(workdir), out_dir)
