"""Device mesh over the named axes `data`, `fsdp` and `tensor`."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh

from tinylm_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; at most one may be -1, meaning 'all remaining devices'.

    `num_devices` restricts the mesh to the first N devices (None: all of them).
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    num_devices: int | None = None

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]  # num_devices is not an axis
        if sum(s == -1 for s in sizes) > 1:
            raise ConfigError(f"MeshConfig: only one axis may be -1, got {self}")
        if any(s == 0 or s < -1 for s in sizes):
            raise ConfigError(f"MeshConfig: sizes must be positive or -1, got {self}")
        fixed = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if num_devices % fixed:
                raise ConfigError(
                    f"MeshConfig {self}: the fixed axes multiply to {fixed}, which does not "
                    f"divide the {num_devices} available devices"
                )
            sizes = [num_devices // fixed if s == -1 else s for s in sizes]
        if math.prod(sizes) != num_devices:
            raise ConfigError(
                f"MeshConfig {self} needs {math.prod(sizes)} devices but {num_devices} are "
                "available; set one axis to -1 or make the sizes multiply to the device count"
            )
        return tuple(sizes)


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
