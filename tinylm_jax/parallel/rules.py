"""Logical axis rules: the table mapping the model's logical axis names onto mesh axes.

Parameters use `embed, vocab, heads, kv_heads, kv, mlp, norm, layers` (and `byte_*` in the
byte-level embedder and head); activations use the `act_*` names, so that e.g. parameters
shard over `fsdp` while activations do not.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tinylm_jax.config.mesh import Rules
from tinylm_jax.errors import ConfigError

# Which setting a user changes when a logical axis does not divide its mesh axes.
_AXIS_FIELDS = {
    "embed": "ModelConfig.d_model",
    "vocab": "ModelConfig.vocab_size",
    "heads": "ModelConfig.n_heads",
    "kv_heads": "ModelConfig.n_kv_heads",
    "mlp": "ModelConfig.ffn_dim",
    "kv": "ModelConfig.head_dim",
    "layers": "ModelConfig.n_layers",
    "byte_embed": "ModelConfig.byte_embed_dim",
    "byte_length": "ModelConfig.max_token_bytes",
}


def _mesh_axes(spec_entry) -> tuple[str, ...]:
    if spec_entry is None:
        return ()
    return (spec_entry,) if isinstance(spec_entry, str) else tuple(spec_entry)


def _resolved_axes(logical_names: tuple, rules: Rules) -> list[tuple[str, ...]]:
    """Mesh axes of each dimension exactly as Flax resolves them (the first applicable rule
    wins), so these checks and the real shardings can never disagree."""
    return [_mesh_axes(entry) for entry in _mesh_spec(tuple(logical_names), rules)]


def _mesh_spec(logical_names: tuple, rules: Rules) -> PartitionSpec:
    spec = nn.logical_to_mesh_axes(logical_names, rules)
    assert spec is not None  # Flax returns None only when no rules are given at all
    return spec


def check_divisible(abstract_boxed, mesh: Mesh, rules: Rules) -> None:
    """Fails, naming parameter, dimension and mesh axis, if any sharded dim is uneven."""
    boxes = jax.tree_util.tree_leaves_with_path(
        abstract_boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )
    for path, box in boxes:
        if not isinstance(box, nn.LogicallyPartitioned):
            continue
        dims = zip(box.value.shape, box.names, _resolved_axes(box.names, rules), strict=True)
        for dim, (size, logical, axes) in enumerate(dims):
            shards = math.prod(mesh.shape[a] for a in axes)
            if size % shards:
                name = "/".join(str(getattr(k, "key", k)) for k in path)
                hint = _AXIS_FIELDS.get(logical or "", f"the logical axis {logical!r}")
                raise ConfigError(
                    f"Cannot shard parameter {name} of shape {tuple(box.value.shape)}: dimension "
                    f"{dim} (logical axis {logical!r}, set by {hint}) has size {size}, which is "
                    f"not divisible by mesh axes {axes} of total size {shards}. Change {hint}, the "
                    f"MeshConfig sizes, or map {logical!r} elsewhere in logical_axis_rules.rules."
                )


def batch_shards(mesh: Mesh, rules: Rules) -> int:
    """How many ways a batch splits: the product of the mesh axes `act_batch` maps to."""
    (axes,) = _resolved_axes(("act_batch",), rules)
    return math.prod(mesh.shape[a] for a in axes)


def check_batch_divisible(batch_size: int, mesh: Mesh, rules: Rules, what: str) -> None:
    (axes,) = _resolved_axes(("act_batch",), rules)
    shards = batch_shards(mesh, rules)
    if batch_size % shards:
        raise ConfigError(
            f"{what}={batch_size} is not divisible by the batch mesh axes {axes} of total size "
            f"{shards}; choose a multiple of {shards} or change MeshConfig."
        )


def shardings_for(abstract_boxed, mesh: Mesh, rules: Rules):
    """NamedShardings for a (possibly boxed) abstract tree; unboxed leaves are replicated."""
    specs = nn.get_partition_spec(abstract_boxed)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int = 2) -> NamedSharding:
    """Sharding of a [B, ...] batch: B over the mesh axes of `act_batch`, the rest replicated."""
    return NamedSharding(mesh, _mesh_spec(("act_batch",) + (None,) * (ndim - 1), rules))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
