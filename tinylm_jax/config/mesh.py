"""The device mesh's axis sizes and the logical axis rules that map model axes onto them."""

from __future__ import annotations

import dataclasses
import math

from tinylm_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("norm", None),
    ("layers", None),
    # The byte encoder/decoder of input_embedding='byte_pooled' / output_head='bytes' are small
    # (a few M params) and run over 12 slots per token: replicated, they need no collectives.
    ("byte_vocab", None),
    ("byte_length", None),
    ("byte_embed", None),
    ("byte_out", None),
    ("byte_heads", None),
    ("byte_mlp", None),
)


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
        data, fsdp, tensor = sizes
        return data, fsdp, tensor
