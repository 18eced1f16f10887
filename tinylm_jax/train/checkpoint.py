"""Orbax checkpoints of a run: train state, data iterator state and run metadata."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import gin
import grain
import jax
import orbax.checkpoint as ocp

from tinylm_jax.train.state import TrainState


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Save every `every_steps`; keep the newest `keep` plus every `keep_period`-th step."""

    every_steps: int = 500
    keep: int = 3
    keep_period: int | None = None
    async_save: bool = True


def checkpoint_dir(workdir: str | Path) -> Path:
    return Path(workdir).absolute() / "checkpoints"


def make_manager(workdir: str | Path, config: CheckpointConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep,
        keep_period=config.keep_period,
        enable_async_checkpointing=config.async_save,
        create=True,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
            "metadata": ocp.JsonCheckpointHandler(),
        },
    )


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    data_iterator,
    metadata: dict,
    force: bool = False,
) -> bool:
    step = int(jax.device_get(state.step))
    args = {"state": ocp.args.StandardSave(state), "metadata": ocp.args.JsonSave(metadata)}
    if data_iterator is not None:
        args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return manager.save(step, args=ocp.args.Composite(**args), force=force)


def restore_latest(
    manager: ocp.CheckpointManager, abstract: TrainState, shardings: TrainState, data_iterator
) -> tuple[TrainState, dict] | None:
    """Restores the newest checkpoint onto `shardings` (any mesh), or None if there is none."""
    step = manager.latest_step()
    if step is None:
        return None
    target = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    args = {"state": ocp.args.StandardRestore(target), "metadata": ocp.args.JsonRestore()}
    if data_iterator is not None:
        args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = manager.restore(step, args=ocp.args.Composite(**args))
    logging.info("restored checkpoint at step %d from %s", step, manager.directory)
    return restored["state"], restored["metadata"]
