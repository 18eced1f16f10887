"""TFDS builders for local corpora, written as ArrayRecord without TensorFlow.

TFDS 4.9 builds and reads `file_format='array_record'` datasets in its no-TF
mode: `GeneratorBasedBuilder.download_and_prepare()` serializes examples with
its numpy example serializer and `as_data_source()` reads them back through
ArrayRecord. Each builder gets a *custom* BuilderConfig whose name is a hash of
its inputs, so changed inputs land in a new dataset directory instead of
silently reusing stale data.

Skipped documents (see `documents.py`) are counted per split and stored in the
dataset's metadata (`metadata.json`), so a reused dataset reports them too.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import pathlib
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow_datasets as tfds

from tinylm_jax.data import documents as documents_lib
from tinylm_jax.data.progress import Progress
from tinylm_jax.errors import DataError

log = logging.getLogger(__name__)

# Directories of the stdlib left out of the demo corpus: third-party code, the
# (large, repetitive) test suites, and generated codec tables. What remains is
# ~1,500 hand-written modules, about 12 MB of code, docstrings and comments.
STDLIB_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings", "__pycache__"}
)

SPLITS = ("train", "validation")


@dataclasses.dataclass(eq=False)
class DocumentsConfig(tfds.core.BuilderConfig):
    """Settings of a documents builder; `name` is a hash of these and the files."""

    text_key: str = "text"
    validation_fraction: float = 0.01
    max_documents: int | None = None


# TFDS ships no type information, so mypy checks the class keyword against
# object.__init_subclass__; TFDS's RegisteredDataset.__init_subclass__ takes it.
class _DocumentsBuilder(  # type: ignore[call-arg]
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
    """Splits documents of `builder_config.files` into train/validation by key hash."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def __init__(self, *, files: Sequence[str] = (), root: str | None = None, **kwargs):
        # The file list stays off the BuilderConfig: TFDS logs the config's repr.
        self._files = tuple(files)
        self._root = root
        self._forced_validation: str | None = None  # See _split_generators.
        super().__init__(**kwargs)

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        # TFDS looks for a checksums file next to the builder's code, which needs the
        # optional `importlib_resources` package; local builders download nothing.
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Documents as UTF-8 text, keyed by path (and line/row).",
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "key": tfds.features.Text()}
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _assigned_documents(self) -> Iterator[tuple[str, documents_lib.Document]]:
        """(split, document) pairs in file order, up to max_documents usable ones."""
        cfg = self.builder_config
        files = [pathlib.Path(f) for f in self._files]
        root = pathlib.Path(self._root) if self._root else None
        kept = 0
        for doc in documents_lib.read_documents(files, cfg.text_key, root):
            if cfg.max_documents is not None and kept >= cfg.max_documents:
                return
            kept += doc.text is not None
            in_validation = (
                documents_lib.is_validation(doc.key, cfg.validation_fraction)
                or doc.key == self._forced_validation
            )
            yield ("validation" if in_validation else "train"), doc

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, str]]]]:
        del dl_manager  # Everything is local.
        # A counting pre-pass: TFDS cannot write a split without examples, and the
        # skip counts must be recorded even for a split that ends up empty.
        stats: dict[str, dict[str, Any]] = {
            s: {"documents": 0, "bytes": 0, "skipped": collections.Counter()} for s in SPLITS
        }
        lowest: tuple[float, str, int] | None = None  # Train doc with the lowest split score.
        with Progress(f"reading {self.name} documents", unit="documents") as progress:
            for split, doc in self._assigned_documents():
                progress.advance()
                if doc.text is None:
                    stats[split]["skipped"][doc.skip_reason] += 1
                    log.debug("Skipping %s document %s (%s).", self.name, doc.key, doc.skip_reason)
                    continue
                size = len(doc.text.encode("utf-8"))
                stats[split]["documents"] += 1
                stats[split]["bytes"] += size
                score = documents_lib.split_score(doc.key)
                if split == "train" and (lowest is None or score < lowest[0]):
                    lowest = (score, doc.key, size)
        for split, st in stats.items():
            if st["skipped"]:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(st["skipped"].items()))
                log.warning(
                    "Skipped %s %s documents (%s).", sum(st["skipped"].values()), split, reasons
                )
        # A small corpus can hash no document into validation; then the train document
        # closest to the threshold moves over (still a pure function of the inputs).
        val, train = stats["validation"], stats["train"]
        if self.builder_config.validation_fraction > 0 and not val["documents"]:
            if train["documents"] >= 2 and lowest is not None:
                self._forced_validation = lowest[1]
                val["documents"], val["bytes"] = 1, lowest[2]
                train["documents"] -= 1
                train["bytes"] -= lowest[2]
                log.info("No document hashed into validation; using %s.", lowest[1])
        for split, st in stats.items():
            st["skipped"] = dict(st["skipped"])
            self.info.metadata[f"{split}_stats"] = st  # Saved with dataset_info.
        if not any(st["documents"] for st in stats.values()):
            raise DataError(
                f"Corpus {self.name} has no usable documents (skipped: "
                f"{ {s: st['skipped'] for s, st in stats.items()} }). Check DataConfig.paths / "
                "text_key; documents must be non-empty UTF-8 text."
            )
        return {
            split: self._generate_examples(split) for split in SPLITS if stats[split]["documents"]
        }

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, str]]]:
        for doc_split, doc in self._assigned_documents():
            if doc_split == split and doc.text is not None:
                yield doc.key, {"text": doc.text, "key": doc.key}


class TextFiles(_DocumentsBuilder):
    """A user's local corpus (`.txt`-like files, `.jsonl`, `.parquet`)."""


class PythonStdlib(_DocumentsBuilder):
    """The installed Python standard library's `.py` files: a no-download corpus."""


def text_files_config(
    paths: Sequence[str], text_key: str, validation_fraction: float, max_documents: int | None
) -> tuple[DocumentsConfig, list[pathlib.Path]]:
    """Builder config (named by a hash of inputs and settings) and resolved files."""
    files = documents_lib.resolve_paths(paths)
    name = (
        "c"
        + documents_lib.files_fingerprint(files, text_key, validation_fraction, max_documents)[:20]
    )
    return DocumentsConfig(
        name=name,
        text_key=text_key,
        validation_fraction=validation_fraction,
        max_documents=max_documents,
        description=f"{len(files)} files",
    ), files


def stdlib_files(stdlib: pathlib.Path | None = None) -> list[pathlib.Path]:
    """Sorted `.py` files of the stdlib minus `STDLIB_EXCLUDED_DIRS`."""
    stdlib = stdlib or pathlib.Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in stdlib.rglob("*.py")
        if not STDLIB_EXCLUDED_DIRS.intersection(p.relative_to(stdlib).parts[:-1])
    )


def python_stdlib_config(
    validation_fraction: float, max_documents: int | None
) -> tuple[DocumentsConfig, list[pathlib.Path], pathlib.Path]:
    """Builder config, files and root of the installed stdlib."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = stdlib_files(stdlib)
    digest = documents_lib.files_fingerprint(
        files, validation_fraction, max_documents, sorted(STDLIB_EXCLUDED_DIRS)
    )
    name = f"py{sys.version_info.major}{sys.version_info.minor}_{digest[:16]}"
    return (
        DocumentsConfig(
            name=name,
            validation_fraction=validation_fraction,
            max_documents=max_documents,
            description=f"Python {sys.version.split()[0]} stdlib",
        ),
        files,
        stdlib,
    )


BUILDERS = {"text_files": TextFiles, "python_stdlib": PythonStdlib}
