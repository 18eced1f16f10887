"""Hugging Face checkpoint files: (sharded) safetensors through safetensors' numpy API.

No PyTorch needed either way. bfloat16 tensors round-trip through `ml_dtypes` (a JAX
dependency), which safetensors' numpy API understands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy for safetensors)
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from tinylm_jax.errors import ConfigError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def write_tensors(
    tensors: Mapping[str, np.ndarray], out_dir: Path, max_shard_bytes: int = 4 * 1024**3
) -> list[str]:
    """Writes `model.safetensors`, or shards plus `model.safetensors.index.json` when large."""
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = array
        size += array.nbytes
    # HF loaders check the `format` metadata; "pt" is what they expect of a torch checkpoint.
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / SINGLE_FILE), metadata=metadata)
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards, strict=True):
        save_file(shard, str(out_dir / name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(a.nbytes for a in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return names + [INDEX_FILE]


class TensorReader:
    """Lazy access to the tensors of an HF model directory (single file or sharded)."""

    def __init__(self, hf_dir: str | Path):
        hf_dir = Path(hf_dir)
        if (hf_dir / INDEX_FILE).exists():
            weight_map = json.loads((hf_dir / INDEX_FILE).read_text())["weight_map"]
            self._files = {name: hf_dir / file for name, file in weight_map.items()}
        elif (hf_dir / SINGLE_FILE).exists():
            with safe_open(str(hf_dir / SINGLE_FILE), framework="np") as f:
                self._files = dict.fromkeys(f.keys(), hf_dir / SINGLE_FILE)
        else:
            others = sorted(p.name for p in hf_dir.glob("*.bin")) + sorted(
                p.name for p in hf_dir.glob("*.pth")
            )
            hint = (
                f" (found PyTorch pickles {others[:3]}: re-save them as safetensors, e.g. "
                "model.save_pretrained(dir, safe_serialization=True))"
                if others
                else ""
            )
            raise ConfigError(f"{hf_dir}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")
        missing = sorted({str(p) for p in self._files.values() if not p.exists()})
        if missing:
            raise ConfigError(f"{hf_dir}: {INDEX_FILE} names missing shards {missing[:3]}")

    @property
    def names(self) -> list[str]:
        return list(self._files)

    def read(self, name: str) -> np.ndarray:
        with safe_open(str(self._files[name]), framework="np") as f:
            return f.get_tensor(name)
