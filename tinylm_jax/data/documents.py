"""Reading documents from local files, with counted (never silent) skips.

Skip policy: a document is skipped, and counted under its reason, when it is
  * 'empty': zero-length or whitespace only;
  * 'undecodable': not valid UTF-8 (we never guess an encoding or insert
    replacement characters, which would silently change the text);
  * 'invalid_json': a `.jsonl` line that is not a JSON object;
  * 'missing_text_key': a `.jsonl` object without a string under `text_key`.
Blank lines in `.jsonl` files are separators, not documents.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence

from tinylm_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Document:
    """One document, or a skipped one (text None, skip_reason set)."""

    key: str  # Stable identity: path, or path:line / path:row.
    text: str | None
    skip_reason: str | None = None


def to_text(value: str | bytes | None) -> tuple[str | None, str | None]:
    """Returns (text, None) or (None, skip_reason) for a raw text value."""
    if value is None:
        return None, "empty"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "undecodable"
    if not value.strip():
        return None, "empty"
    return value, None


def resolve_paths(patterns: Sequence[str]) -> list[pathlib.Path]:
    """Expands files/globs/directories into a sorted, de-duplicated file list."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not patterns:
        raise DataError("dataset='text_files' needs DataConfig.paths (files or globs); got none.")
    files: set[pathlib.Path] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(str(pattern))
        if os.path.isdir(expanded):
            matches = glob.glob(os.path.join(expanded, "**", "*"), recursive=True)
        else:
            matches = glob.glob(expanded, recursive=True)
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise DataError(
                f"DataConfig.paths entry {pattern!r} matches no files; check the path or glob."
            )
        files.update(pathlib.Path(m).resolve() for m in matches)
    return sorted(files)


def files_fingerprint(files: Iterable[pathlib.Path], *extra: object) -> str:
    """Hash of paths, sizes and mtimes (plus settings): changes when inputs change."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([repr(e) for e in extra]).encode())
    return h.hexdigest()


def split_score(key: str) -> float:
    """A uniform [0, 1) number from a hash of the document key (not its position)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_validation(key: str, validation_fraction: float) -> bool:
    """Deterministic per-document split: the same key always lands in the same split."""
    return split_score(key) < validation_fraction


def _read_plain(path: pathlib.Path, key: str) -> Iterator[Document]:
    text, reason = to_text(path.read_bytes())
    yield Document(key, text, reason)


def _read_jsonl(path: pathlib.Path, key: str, text_key: str) -> Iterator[Document]:
    with open(path, "rb") as f:
        for line_no, line in enumerate(f):
            if not line.strip():
                continue
            doc_key = f"{key}:{line_no}"
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield Document(doc_key, None, "undecodable")
                continue
            except json.JSONDecodeError:
                yield Document(doc_key, None, "invalid_json")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get(text_key), str):
                yield Document(doc_key, None, "missing_text_key")
                continue
            text, reason = to_text(obj[text_key])
            yield Document(doc_key, text, reason)


def _read_parquet(path: pathlib.Path, key: str, text_key: str) -> Iterator[Document]:
    import pyarrow.parquet as pq  # Optional dependency; only needed for parquet inputs.

    table = pq.ParquetFile(path)
    if text_key not in table.schema_arrow.names:
        raise DataError(
            f"{path} has no column {text_key!r} (columns: {table.schema_arrow.names}); "
            "set DataConfig.text_key."
        )
    row = 0
    for batch in table.iter_batches(columns=[text_key]):
        for value in batch.column(0).to_pylist():
            text, reason = to_text(value)
            yield Document(f"{key}:{row}", text, reason)
            row += 1


def read_documents(
    files: Sequence[pathlib.Path], text_key: str = "text", root: pathlib.Path | None = None
) -> Iterator[Document]:
    """Yields documents of `files` in order; keys are paths relative to `root`."""
    for path in files:
        key = str(path.relative_to(root)) if root else str(path)
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            yield from _read_jsonl(path, key, text_key)
        elif suffix == ".parquet":
            yield from _read_parquet(path, key, text_key)
        else:
            yield from _read_plain(path, key)
