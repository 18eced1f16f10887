"""Orbax checkpoints of a run: train state, data iterator state and run metadata.

A checkpoint is `DIR/checkpoints/<step>/` with three items: `state` (the TrainState: params,
optimizer state, step, RNG), `data` (Grain iterator state, one file per process) and
`metadata` (JSON: tokenizer fingerprint, operative gin config, ...), plus any named extra
items of host arrays the caller adds (the trainer's hooks save their own state there; this
module does not interpret them).
Orbax writes each step under a temporary name and renames it when complete, so a run killed
mid-save leaves `<step>.orbax-checkpoint-tmp*`, which is ignored and cleaned up. A complete
but damaged step (truncated or garbled files) fails to restore; `restore_latest` reports it
and falls back to the previous step.

`load_params` / `inherit_params` read another run's params (optionally some subtrees under
other names): the hook for `CheckpointConfig.init_from` and for parameter inheritance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from tinylm_jax import layout
from tinylm_jax.config.train import CheckpointConfig
from tinylm_jax.engine.state import TrainState
from tinylm_jax.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

TMP_MARKER = ".orbax-checkpoint-tmp"


def checkpoint_dir(workdir: epath.PathLike) -> epath.Path:
    return layout.checkpoints_dir(workdir)


_ITEMS = ("state", "data", "metadata")


def make_manager(
    workdir: epath.PathLike, config: CheckpointConfig, extras: Sequence[str] = ()
) -> ocp.CheckpointManager:
    """A manager of `workdir`'s checkpoints that can also save and restore the extra items
    named `extras` (Orbax needs each item's handler before the first save or restore)."""
    clash = sorted(set(extras) & set(_ITEMS))
    if clash:
        raise ValueError(f"extra checkpoint items {clash} clash with the items {_ITEMS}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep,
        keep_period=config.keep_period,
        enable_async_checkpointing=config.async_save,
        cleanup_tmp_directories=True,
        create=True,
    )
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
            "metadata": ocp.JsonCheckpointHandler(),
            **{name: ocp.StandardCheckpointHandler() for name in extras},
        },
    )


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    data_iterator,
    metadata: dict,
    force: bool = False,
    extras: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> bool:
    """Starts saving `state` at its step (async if configured); device→host copies finish
    before this returns, so the caller may donate `state` to the next step right away.
    Each of `extras` (name -> host arrays; names given to `make_manager`) is saved as the
    item of that name."""
    step = int(jax.device_get(state.step))
    args = {"state": ocp.args.StandardSave(state), "metadata": ocp.args.JsonSave(metadata)}
    if data_iterator is not None:
        args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    for name, arrays in (extras or {}).items():
        args[name] = ocp.args.StandardSave(dict(arrays))
    return manager.save(step, args=ocp.args.Composite(**args), force=force)


def save_failed(directory: epath.PathLike, step: int, error: BaseException) -> StorageError:
    """The error to raise when saving `step` in `directory` (or finishing an earlier async save)
    failed: names the path, the error and the newest complete checkpoint, which is intact
    (Orbax writes a step under a temporary name and renames it only once complete)."""
    directory = epath.Path(directory)
    saved = [s for s in complete_steps(directory) if s != step] or complete_steps(directory)
    intact = f"step {saved[0]} is intact and a rerun resumes from it" if saved else "none exists"
    return StorageError(
        f"saving a checkpoint in {directory} failed at step {step}: {_first_line(error)}. The "
        f"newest complete checkpoint: {intact}. Free space or fix the permissions of "
        f"{directory}, then rerun the same command."
    )


def restore_latest(
    manager: ocp.CheckpointManager,
    abstract: TrainState,
    shardings: TrainState,
    data_iterator,
    set_aside_damaged: bool = False,
    extras: Sequence[str] = (),
) -> tuple[TrainState, dict, dict[str, dict[str, np.ndarray]]] | None:
    """(state on `shardings` (any mesh), metadata, extras) of the newest good checkpoint, or
    None if none; extras maps each name of `extras` that the step holds to its arrays.

    Incomplete saves are ignored. A damaged step (unreadable or truncated files) is reported
    with its path and the previous step is tried; with `set_aside_damaged` (a resuming
    trainer) process 0 then moves the damaged steps to `DIR/damaged_checkpoints/`, so those
    steps can be saved again. A checkpoint of another model, optimizer or process count is a
    ConfigError, never "damaged"; so is a directory where no step can be restored.
    """
    directory = epath.Path(manager.directory)
    _report_incomplete(directory)
    target = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    damaged: list[epath.Path] = []
    for step in complete_steps(directory):
        path = directory / str(step)
        error = None
        try:
            _check_compatible(manager, step, path, abstract, data_iterator is not None)
            args = {"state": ocp.args.StandardRestore(target), "metadata": ocp.args.JsonRestore()}
            # Imported checkpoints (`tinylm import-hf`) hold no data state: data starts afresh.
            if data_iterator is not None and (path / "data").is_dir():
                args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
            for name in extras:
                if (path / name).is_dir():
                    args[name] = ocp.args.StandardRestore()
            restored = manager.restore(step, args=ocp.args.Composite(**args))
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - classified: only unreadable files are damage
            if not is_damage(e):
                raise
            error = _first_line(e)
        if _all_processes_ok(error is None):
            log.info("restored checkpoint at step %d from %s", step, path)
            if set_aside_damaged:
                for bad in damaged:
                    _set_aside(bad)
                if damaged:
                    manager.reload()
            saved = {name: dict(restored[name]) for name in extras if name in args}
            return restored["state"], restored["metadata"], saved
        reason = error or "failed on another process"
        log.warning("damaged checkpoint %s is skipped (%s)", path, reason)
        if jax.process_index() == 0:
            print(f"damaged checkpoint skipped: {path} ({reason})", flush=True)
        damaged.append(path)
    if damaged:
        raise ConfigError(
            f"no checkpoint in {directory} can be restored; damaged: {[str(p) for p in damaged]}."
            " Move that directory away to start over."
        )
    return None


# Errors that say nothing about the files: the step may be fine, so it must not be set aside.
_TRANSIENT_ERRORS = (MemoryError, ConnectionError, TimeoutError, InterruptedError)
_TRANSIENT_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "UNAVAILABLE", "DEADLINE_EXCEEDED")


def is_damage(error: BaseException) -> bool:
    """Whether a failed read means the step's files are unreadable (truncated, garbled,
    missing) rather than a problem of this moment (out of memory, a transient I/O error)."""
    if isinstance(error, _TRANSIENT_ERRORS):
        return False
    text = str(error).lower()
    return not any(marker.lower() in text for marker in _TRANSIENT_MARKERS)


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"[:400]


def complete_steps(directory: epath.PathLike) -> list[int]:
    """Steps with a complete save under `directory`, newest first (interrupted saves, named
    `<step>.orbax-checkpoint-tmp*`, are not steps)."""
    directory = epath.Path(directory)
    if not directory.exists():
        return []
    return sorted(
        (int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()),
        reverse=True,
    )


def _signatures(tree) -> dict[str, tuple]:
    """'/'-joined path -> (shape, dtype) of every array leaf (the naming Orbax's metadata uses)."""
    out = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if getattr(leaf, "shape", None) is None:
            continue
        names = [str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in keypath]
        dtype = getattr(leaf, "dtype", None)
        out["/".join(names)] = (tuple(leaf.shape), None if dtype is None else np.dtype(dtype).name)
    return out


def _describe_difference(
    key: str, saved: tuple[tuple, str] | None, expected: tuple[tuple, str] | None
) -> str:
    """'key: checkpoint (32,) vs run (64,)', naming dtypes only where they differ."""
    if saved is None or expected is None or saved[0] != expected[0]:
        shape_saved, shape_run = (s[0] if s else "absent" for s in (saved, expected))
        return f"{key}: checkpoint {shape_saved} vs run {shape_run}"
    return f"{key}: checkpoint {saved[1]} vs run {expected[1]}"


def _check_compatible(
    manager: ocp.CheckpointManager,
    step: int,
    path: epath.Path,
    abstract: TrainState,
    with_data: bool,
) -> None:
    """ConfigError if step `step` holds another run's state rather than a damaged one of ours."""
    saved = _signatures(manager.item_metadata(step)["state"].tree)
    expected = _signatures(abstract)
    if saved != expected:
        diffs = [
            _describe_difference(k, saved.get(k), expected.get(k))
            for k in sorted(set(saved) | set(expected), key=lambda k: (k[:7] != "params/", k))
            if saved.get(k) != expected.get(k)
        ]
        raise ConfigError(
            f"checkpoint {path} does not match this run's model/optimizer ({len(diffs)} "
            f"differences: {'; '.join(diffs[:8])}). Resume without overriding model or "
            "optimizer settings, or train in a new --workdir."
        )
    data_dir = path / "data"
    if with_data and data_dir.is_dir():
        mine = data_dir / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        others = sorted(p.name for p in data_dir.glob("process_*-of-*.json"))
        if not mine.exists() and others:
            raise ConfigError(
                f"checkpoint {path} was written by a run with another process count "
                f"({others[0]}); resume it with that many processes."
            )


def _report_incomplete(directory: epath.Path) -> None:
    if jax.process_index() != 0 or not directory.exists():
        return
    for path in sorted(directory.glob(f"*{TMP_MARKER}*")):
        log.warning("incomplete checkpoint %s (a save was interrupted) is ignored", path)


def _all_processes_ok(ok: bool) -> bool:
    """True only if every process succeeded, so that all of them fall back together."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils

    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _set_aside(path: epath.Path) -> None:
    if jax.process_index() == 0:
        dest = path.parent.parent / "damaged_checkpoints" / f"{path.name}-{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        log.warning("moved damaged checkpoint %s to %s", path, dest)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("tinylm_set_aside_damaged_checkpoint")


# --- Params of another run ------------------------------------------------------------------


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _flatten(tree) -> dict[str, Any]:
    """'/'-joined param path -> leaf (an array, or a saved array's metadata: both have a
    shape and a dtype)."""
    return traverse_util.flatten_dict(tree, sep="/")


def _unflatten(flat: Mapping[str, object]) -> dict:
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix + "/")


def load_params(
    workdir: epath.PathLike, step: int | None = None, prefixes: list[str] | None = None
) -> tuple[dict, int]:
    """(params of another run as a nested dict of numpy arrays, the step they are from).

    Reads only the subtrees under `prefixes` ('/'-joined param paths; None: all), straight
    from the files: no gin config, mesh or optimizer state of that run is needed.
    """
    directory = checkpoint_dir(workdir)
    if step is not None:
        return _read_params(directory / str(step) / "state", prefixes), step
    damaged = []
    for candidate in complete_steps(directory):
        try:
            return _read_params(directory / str(candidate) / "state", prefixes), candidate
        except _UnreadableStep as error:
            print(f"damaged checkpoint skipped: {directory / str(candidate)} ({error})", flush=True)
            damaged.append(str(directory / str(candidate)))
    raise ConfigError(
        f"no readable checkpoint in {directory} (damaged: {damaged}): the workdir must hold a "
        "trained run (`tinylm train`, `import-hf` or `inherit`)"
    )


class _UnreadableStep(Exception):
    """A step whose params cannot be read from its files."""


def _read_params(path: epath.Path, prefixes: list[str] | None) -> dict:
    if not path.exists():
        raise ConfigError(f"{path} does not exist: check the workdir and step")
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        saved = checkpointer.metadata(path).item_metadata.tree
    except Exception as e:  # noqa: BLE001 - classified: only unreadable files are damage
        if not is_damage(e):
            raise
        raise _UnreadableStep(_first_line(e)) from None
    available = _flatten(saved.get("params", {}))
    wanted = [p for p in available if prefixes is None or any(_under(p, pre) for pre in prefixes)]
    missing = [pre for pre in prefixes or [] if not any(_under(p, pre) for p in available)]
    if missing:
        raise ConfigError(f"{path} has no params under {missing}; it has {sorted(available)[:40]}")
    target = {"params": _unflatten({p: np.zeros(available[p].shape, np.float32) for p in wanted})}
    restore_args = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target
    )
    try:
        restored = checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item=target, restore_args=restore_args, partial_restore=True
            ),
        )
    except Exception as e:  # noqa: BLE001 - classified: only unreadable files are damage
        if not is_damage(e):
            raise
        raise _UnreadableStep(_first_line(e)) from None
    return restored["params"]


def _source_path(path: str, mapping: Mapping[str, str]) -> str | None:
    """The source path `mapping` assigns to target param `path` (longest prefix wins)."""
    keys = [k for k in mapping if _under(path, k)]
    if not keys:
        return None
    key = max(keys, key=len)
    return _join(mapping[key], path[len(key) :].lstrip("/"))


def inherit_params(
    params: dict, source: dict, mapping: Mapping[str, str] | None = None
) -> tuple[dict, list[str]]:
    """`params` with the mapped leaves replaced by `source`'s (cast to the target dtype).

    Returns (new params, target paths replaced). Missing source names or mismatched shapes
    raise one ConfigError listing all of them. Leaves keep their type: jax arrays are placed
    with the target leaf's sharding, so this works on a sharded (multi-process) state.
    """
    mapping = {"": ""} if mapping is None else dict(mapping)
    flat_target, flat_source = _flatten(params), _flatten(source)
    unused = [k for k in mapping if not any(_under(p, k) for p in flat_target)]
    problems = [f"mapping key {k!r} matches no param of this model" for k in unused]
    pairs = {}
    for path, leaf in flat_target.items():
        src = _source_path(path, mapping)
        if src is None:
            continue
        if src not in flat_source:
            problems.append(f"{path} <- {src}: not in the source checkpoint")
        elif tuple(flat_source[src].shape) != tuple(leaf.shape):
            shape = tuple(flat_source[src].shape)
            problems.append(f"{path} {tuple(leaf.shape)} <- {src} {shape}: shapes differ")
        else:
            pairs[path] = src
    if problems:
        raise ConfigError(
            "cannot initialize from the source params:\n  "
            + "\n  ".join(problems)
            + "\nFix CheckpointConfig.init_mapping (target prefix -> source prefix) or the model."
        )
    new = dict(flat_target)
    for path, src in pairs.items():
        value = np.asarray(flat_source[src]).astype(flat_target[path].dtype)
        new[path] = _like(flat_target[path], value)
    return _unflatten(new), sorted(pairs)


def _like(leaf, value: np.ndarray):
    if isinstance(leaf, jax.Array):
        return jax.make_array_from_callback(value.shape, leaf.sharding, lambda index: value[index])
    return value
