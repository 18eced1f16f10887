"""Host batches → global `jax.Array`s laid out on the mesh."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from tinylm_jax.parallel.rules import Rules, batch_sharding


def to_global(batch: dict[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
    """Each process passes its own rows; the result is one array of all processes' rows."""
    out = {}
    for key, local in batch.items():
        local = np.asarray(local)
        if local.dtype == np.int64:
            local = local.astype(np.int32)
        global_shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
        out[key] = jax.make_array_from_process_local_data(
            batch_sharding(mesh, rules, local.ndim), local, global_shape
        )
    return out
