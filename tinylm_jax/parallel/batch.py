"""Host batches → global `jax.Array`s laid out on the mesh."""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh

from tinylm_jax.config.mesh import Rules
from tinylm_jax.parallel.rules import batch_sharding


def _device_dtype(value) -> np.ndarray:
    """Host arrays as the devices take them: int64 ids (Grain, numpy defaults) become int32."""
    value = np.asarray(value)
    return value.astype(np.int32) if value.dtype == np.int64 else value


def to_global(batch: dict[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
    """Each process passes its own rows; the result is one array of all processes' rows."""
    out: dict[str, jax.Array] = {}
    for key, local in batch.items():
        local = _device_dtype(local)
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        out[key] = jax.make_array_from_process_local_data(
            batch_sharding(mesh, rules, local.ndim), local, global_shape
        )
    return out


def _rows(value: np.ndarray, index: tuple[slice, ...]) -> np.ndarray:
    return value[index]


def global_batch_to_devices(
    batch: dict[str, np.ndarray], mesh: Mesh, rules: Rules
) -> dict[str, jax.Array]:
    """Every process passes the whole global batch; each device takes its own rows from it."""
    out: dict[str, jax.Array] = {}
    for key, value in batch.items():
        value = _device_dtype(value)
        out[key] = jax.make_array_from_callback(
            value.shape, batch_sharding(mesh, rules, value.ndim), functools.partial(_rows, value)
        )
    return out
