"""Multi-process start-up: `jax.distributed.initialize` when a run spans several processes."""

from __future__ import annotations

import logging
import os

import jax

_CLUSTER_ENV = (
    "SLURM_NTASKS",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
    "OMPI_COMM_WORLD_SIZE",
    "JAX_COORDINATOR_ADDRESS",
)


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: list[int] | None = None,
) -> None:
    """Joins the distributed runtime when explicit flags or a cluster environment ask for it.

    Explicit coordinator flags win; otherwise a SLURM/TPU-pod/MPI environment with more than
    one task triggers JAX's auto-detection. A single plain process does nothing.
    """
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id too")
        # Only the CPU backend reads this; it must be set before any backend starts.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id, local_device_ids=local_device_ids
        )
    elif any(os.environ.get(name) for name in _CLUSTER_ENV) and _cluster_size() > 1:
        jax.distributed.initialize()
    else:
        return
    logging.info(
        "process %d of %d; %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _cluster_size() -> int:
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return len(hosts.split(",")) if hosts else 2
