"""Carry a model's embedding and output-head rows across a vocabulary change.

An id map is an int array [V_old]: `id_map[old_id]` is the piece's id in the new tokenizer,
or -1 when the piece was deleted (tokenizer compression writes one as `id_map.npy`, plus
`id_map.json` for other tools). `remap_vocab_params` rewrites the two vocabulary-sized
parameters of a param tree, leaving every other leaf as it is:
  token_embed [V, D]  row    new_id <- row old_id
  lm_head     [D, V]  column new_id <- column old_id   (absent when embeddings are tied)
The new model's vocabulary may be larger than the new tokenizer (padded, e.g. to a multiple
of 128 for the TPU/GPU matmul tiles). Those extra ids never occur in data; their rows (and
head columns) start as the mean of the kept rows (columns), so their logit starts at the
mean logit over the kept vocabulary: they take little probability mass and the remapped
model's distribution over real tokens is barely disturbed (the usual "mean init" for added
tokens). Logits of the kept ids are exactly those of the old model.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

ID_MAP_NPY = "id_map.npy"
ID_MAP_JSON = "id_map.json"


def check_id_map(id_map: np.ndarray) -> int:
    """Validates an id map; returns the new tokenizer size (the number of kept ids)."""
    id_map = np.asarray(id_map)
    if id_map.ndim != 1 or not np.issubdtype(id_map.dtype, np.integer):
        raise DataError(f"An id map must be a 1-D integer array; got {id_map.dtype}{id_map.shape}.")
    new_ids = id_map[id_map >= 0]
    if (id_map < -1).any() or not np.array_equal(np.sort(new_ids), np.arange(len(new_ids))):
        raise DataError(
            "An id map must send each kept old id to a distinct new id in [0, kept) and every "
            "deleted id to -1; this one does not (was it written by `tinylm tokenizer compress`?)."
        )
    return len(new_ids)


def save_id_map(directory: str | os.PathLike[str], id_map: np.ndarray) -> None:
    """Writes `id_map.npy` (int32 [V_old]) and `id_map.json` into `directory`."""
    directory = pathlib.Path(directory)
    id_map = np.asarray(id_map, np.int32)
    new_size = check_id_map(id_map)
    array = io.BytesIO()
    np.save(array, id_map)
    write_atomically(directory / ID_MAP_NPY, array.getvalue())
    payload = {"old_vocab_size": len(id_map), "new_vocab_size": new_size, "id_map": id_map.tolist()}
    write_atomically(directory / ID_MAP_JSON, json.dumps(payload) + "\n")


def load_id_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an id map from a directory (its `id_map.npy`), a `.npy` or an `id_map.json`."""
    path = pathlib.Path(path).expanduser()
    if path.is_dir():
        path = path / ID_MAP_NPY
    if not path.is_file():
        raise DataError(
            f"Id map {path} does not exist; point at the --out directory of "
            "`tinylm tokenizer compress` or at its id_map.npy / id_map.json."
        )
    try:
        if path.suffix == ".json":
            id_map = np.asarray(json.loads(path.read_text())["id_map"], np.int32)
        else:
            id_map = np.load(path)
    except (ValueError, KeyError, OSError) as e:
        raise DataError(f"Id map {path} is unreadable ({e}).") from e
    check_id_map(id_map)
    return id_map.astype(np.int32)


def padded_vocab_size(vocab_size: int, multiple: int = 128) -> int:
    """`vocab_size` rounded up to a multiple of `multiple`."""
    return -(-vocab_size // multiple) * multiple


def remap_rows(table: Any, id_map: np.ndarray, vocab_size: int | None = None, axis: int = 0):
    """Gathers `table`'s vocabulary axis through `id_map`; extra ids get the mean of kept ones.

    `table` may have more entries than `id_map` along `axis` (a padded old model): those
    are dropped with the deleted ids.
    """
    n_kept = check_id_map(id_map)
    vocab_size = n_kept if vocab_size is None else vocab_size
    if vocab_size < n_kept:
        raise DataError(
            f"The new model vocabulary ({vocab_size}) is smaller than the new tokenizer "
            f"({n_kept} pieces); set ModelConfig.vocab_size >= {n_kept}."
        )
    if table.shape[axis] < len(id_map):
        raise DataError(
            f"A vocabulary parameter has {table.shape[axis]} entries but the id map covers "
            f"{len(id_map)} old ids; the id map belongs to a bigger tokenizer than this model's."
        )
    old_ids = np.flatnonzero(id_map >= 0)
    old_of_new = np.empty(n_kept, np.int64)
    old_of_new[id_map[old_ids]] = old_ids
    kept = jnp.take(jnp.asarray(table), jnp.asarray(old_of_new), axis=axis)
    if vocab_size == n_kept:
        return kept
    mean = jnp.mean(kept.astype(jnp.float32), axis=axis, keepdims=True).astype(kept.dtype)
    reps = [1] * kept.ndim
    reps[axis] = vocab_size - n_kept
    return jnp.concatenate([kept, jnp.tile(mean, reps)], axis=axis)


def remap_vocab_params(
    params: Mapping[str, Any], id_map: np.ndarray, vocab_size: int | None = None
) -> dict[str, Any]:
    """`params` (a Transformer param tree) with `token_embed` / `lm_head` remapped to the new vocab.

    `vocab_size` is the new model's ModelConfig.vocab_size (default: the new tokenizer size).
    Partitioning boxes (flax `nn.Partitioned`) are kept around the new arrays.
    """
    if "token_embed" not in params:
        raise DataError("The param tree has no `token_embed`; is it a tinylm Transformer's params?")
    out = dict(params)
    for name, axis in (("token_embed", 0), ("lm_head", 1)):
        if name not in params:
            continue
        leaf = params[name]
        if isinstance(leaf, nn.meta.AxisMetadata):
            out[name] = leaf.replace_boxed(remap_rows(leaf.unbox(), id_map, vocab_size, axis))
        else:
            out[name] = remap_rows(leaf, id_map, vocab_size, axis)
    return out
