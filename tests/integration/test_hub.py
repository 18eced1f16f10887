"""Hugging Face Hub ids for `import-hf --hf_dir=` and `DataConfig.tokenizer`, offline: a repo
laid out in a temporary HF_HOME's hub cache (checked by huggingface_hub's own `scan_cache_dir`)
and read with HF_HUB_OFFLINE=1. Subprocesses, since huggingface_hub reads both variables when
it is imported."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from tokenizers import Tokenizer, models, pre_tokenizers

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.interop import llama

REPO = "tiny-org/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HF_CONFIG = {
    "model_type": "llama",
    "vocab_size": 64,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "tie_word_embeddings": False,
}
WORDS = ["<unk>", "<s>", "</s>", "hello", "world"]


def write_checkpoint(directory: Path) -> int:
    """A random tiny Llama (config.json, model.safetensors, tokenizer); its parameter count."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(HF_CONFIG))
    fields = llama.model_fields(HF_CONFIG)
    shapes = llama.expected_shapes(ModelConfig(**fields))
    rng = np.random.default_rng(0)
    tensors = {n: rng.normal(0, 0.02, s).astype(np.float32) for n, s in shapes.items()}
    safetensors.numpy.save_file(tensors, directory / "model.safetensors")
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(special))
    return sum(int(np.prod(s)) for s in shapes.values())


@pytest.fixture
def hf_home(tmp_path) -> tuple[Path, int]:
    """HF_HOME whose hub cache holds REPO at COMMIT (refs/main -> snapshots/COMMIT)."""
    home = tmp_path / "hf_home"
    repo = home / "hub" / f"models--{REPO.replace('/', '--')}"
    params = write_checkpoint(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return home, params


def run_offline(home: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_hub_ids_resolve_from_the_cache_offline(hf_home):
    home, _ = hf_home
    code = f"""
import json, huggingface_hub
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.data import hub
from tinylm_jax.errors import DataError
cached = [r.repo_id for r in huggingface_hub.scan_cache_dir().repos]
tokenizer = load_tokenizer({REPO!r})
try:
    load_tokenizer("tiny-org/not-cached")
    missing = ""
except DataError as error:
    missing = str(error)
print(json.dumps({{"cached": cached, "dir": hub.resolve({REPO!r}, ["*.json"], "x"),
    "ids": tokenizer.encode("hello world"), "vocab": tokenizer.vocab_size,
    "missing": missing}}))
"""
    out = run_offline(home, code)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cached"] == [REPO]  # huggingface_hub's own view of the cache
    assert result["dir"] == str(home / "hub" / f"models--tiny-org--tiny-llama/snapshots/{COMMIT}")
    assert result["ids"] == [3, 4] and result["vocab"] == len(WORDS)
    assert "DataConfig.tokenizer='tiny-org/not-cached' is not a local path" in result["missing"]
    assert "HF_HUB_OFFLINE is set" in result["missing"]


@pytest.mark.slow  # a subprocess that builds a run and writes a checkpoint: ~15 s on 2 cores
def test_import_hf_takes_a_hub_id_offline(hf_home, tmp_path):
    home, params = hf_home
    workdir = tmp_path / "imported"
    code = (
        "import sys\nfrom tinylm_jax.cli.main import main\n"
        f"sys.exit(main(['import-hf', '--hf_dir={REPO}', '--workdir={workdir}', "
        "'--gin_param=MeshConfig.num_devices = 1']))\n"
    )
    out = run_offline(home, code)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["params"] == params
    assert (workdir / "tokenizer.json").exists() and (workdir / "config.gin").exists()
