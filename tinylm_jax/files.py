"""Writing run files on any storage (`etils.epath`: local paths or gs://)."""

from __future__ import annotations

import os
import uuid

from etils import epath

PathLike = str | os.PathLike


def write_atomically(path: PathLike, data: str | bytes) -> None:
    """Writes `data` so that readers see the old file or the whole new one, never a part.

    Locally through a temporary file and a rename (the temporary file is removed when the
    write fails or is interrupted, by SIGTERM too); object stores (gs://) replace an object
    atomically on their own.
    """
    target = epath.Path(path)
    if not is_local(target):
        _write(target, data)
        return
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write(tmp, data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write(path: epath.Path, data: str | bytes) -> None:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def is_local(path: PathLike) -> bool:
    """Whether `path` is on a local filesystem (not an object store URL such as gs://)."""
    return "://" not in os.fspath(path)
