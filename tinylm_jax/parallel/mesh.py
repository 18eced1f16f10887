"""Device mesh over the named axes `data`, `fsdp` and `tensor`."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh

from tinylm_jax.config.mesh import MESH_AXES, MeshConfig
from tinylm_jax.errors import ConfigError


def make_mesh(config: MeshConfig, devices: list | None = None) -> Mesh:
    devices = list(jax.devices()) if devices is None else list(devices)
    if config.num_devices is not None:
        if not 0 < config.num_devices <= len(devices):
            raise ConfigError(
                f"MeshConfig.num_devices={config.num_devices} but only {len(devices)} devices exist"
            )
        devices = devices[: config.num_devices]
    shape = config.resolve(len(devices))
    try:
        device_array = mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
        # Topology-aware placement is unavailable (e.g. forced host devices): use plain order.
        device_array = np.asarray(devices).reshape(shape)
    return Mesh(device_array, MESH_AXES)
