"""One builder per cache entry: concurrent processes wait for it, then reuse its result.

Every cache stage (raw TFDS corpus, trained tokenizer, token counts, packed records) is
built under an exclusive lock on `<entry>.lock` beside the entry (`filelock`: `flock(2)`
locally; on NFS-like shared filesystems the kernel maps it to POSIX record locks).
The holder re-checks whether the entry exists before building, so the first process
builds and every other one, on this host or another host sharing the filesystem, adopts
its result. Builds still write to a private temp path and rename, so a crash mid-build
leaves no half entry behind, only a lock file that the next process reacquires.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator

import filelock

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive(entry: pathlib.Path, what: str) -> Iterator[None]:
    """Holds the lock of cache `entry` (a file or directory path) for the block.

    Waits without a timeout: a build may legitimately take hours, and the lock is
    released by the kernel if its holder dies.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(f"{entry}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        log.info("Waiting for another process that is building %s (%s) ...", what, entry)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
