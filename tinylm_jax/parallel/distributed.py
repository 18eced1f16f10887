"""Multi-process start-up (`jax.distributed.initialize`); SIGTERM is `preemption`'s.

Failure handling: every process sends heartbeats to the coordinator; when one dies, the
others are terminated by JAX's runtime (non-zero exit, "another task died" in the log) within
about `heartbeat_timeout_seconds` instead of hanging in a collective.
"""

from __future__ import annotations

import logging
import os
from typing import Any

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
    heartbeat_timeout_seconds: int | None = None,
    auto_detect: bool = False,
) -> None:
    """Joins the distributed runtime when explicit flags or a cluster environment ask for it.

    Explicit coordinator flags win; otherwise `auto_detect` (`--distributed`: Cloud TPU VMs,
    where no environment variable announces the slice) or a SLURM/TPU-pod/MPI environment with
    more than one task triggers JAX's cluster auto-detection. Otherwise nothing happens.
    `heartbeat_timeout_seconds` (None: JAX's default, 100) bounds how long the survivors of a
    dead process keep waiting.
    """
    timeouts: dict[str, Any] = {}
    if heartbeat_timeout_seconds is not None:
        timeouts["heartbeat_timeout_seconds"] = heartbeat_timeout_seconds
    if coordinator_address is not None:
        if num_processes is None or process_id is None:
            raise ValueError("--coordinator_address needs --num_processes and --process_id too")
        # Only the CPU backend reads this; it must be set before any backend starts.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            **timeouts,
        )
    elif auto_detect or (any(os.environ.get(n) for n in _CLUSTER_ENV) and _cluster_size() > 1):
        jax.distributed.initialize(**timeouts)
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
