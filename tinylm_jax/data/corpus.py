"""Raw (untokenized) corpora: our TFDS builders or a prepared TFDS catalog dataset."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import tensorflow_datasets as tfds

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import builders, cache_lock
from tinylm_jax.data import documents as documents_lib
from tinylm_jax.errors import DataError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RawCorpus:
    """Document sources per split (random access, items are dicts with `text_key`)."""

    name: str
    fingerprint: str  # Changes whenever the documents may have changed.
    splits: Mapping[str, Sequence[Any]]
    text_key: str
    stats: Mapping[str, Any]  # Per split: documents, bytes, skipped (by reason).
    path: str


class _DropCustomConfigNotice(logging.Filter):
    """TFDS warns that every local builder uses a 'custom data configuration': ours always do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Using custom data configuration" not in record.getMessage()


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS's banners, 'custom configuration' notices and nested progress bars (which leave
    escape debris in logs) are replaced by our own progress lines; real warnings pass."""
    absl_logger = logging.getLogger("absl")
    notice = _DropCustomConfigNotice()
    absl_logger.addFilter(notice)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints its banners
            yield
    finally:
        tfds.display_progress_bar(True)
        absl_logger.removeFilter(notice)


def _build(config: DataConfig, data_dir: pathlib.Path) -> RawCorpus:
    if config.dataset == "text_files":
        builder_config, files = builders.text_files_config(
            config.paths, config.text_key, config.validation_fraction, config.max_documents
        )
        root = None
    else:
        builder_config, files, root = builders.python_stdlib_config(
            config.validation_fraction, config.max_documents
        )
    # TFDS builds into `incomplete.*` and renames; a second concurrent builder's rename
    # fails (FileExistsError), so one process builds and the others construct their
    # builder only after it finished (a builder reads the dataset's info when created).
    lock_entry = data_dir / "tfds" / f"{config.dataset}-{builder_config.name}"
    with cache_lock.exclusive(lock_entry, f"the {config.dataset} corpus"), _quiet_tfds():
        builder = builders.BUILDERS[config.dataset](
            config=builder_config,
            files=[str(f) for f in files],
            root=str(root) if root else None,
            data_dir=str(data_dir / "tfds"),
            file_format="array_record",
        )
        builder.download_and_prepare()
    meta = builder.info.metadata or {}
    stats = {s: meta.get(f"{s}_stats", {}) for s in builders.SPLITS}
    sources = builder.as_data_source()  # Splits without documents are not written.
    fp = hashlib.sha256(f"{builder.data_path}:{builder.version}".encode()).hexdigest()[:16]
    return RawCorpus(
        name=f"{builder.name}/{builder_config.name}",
        fingerprint=fp,
        splits={s: sources.get(s, []) for s in builders.SPLITS},
        text_key="text",
        stats=stats,
        path=str(builder.data_path),
    )


def _catalog(config: DataConfig) -> RawCorpus:
    """A prepared TFDS dataset by name; never downloads (tests and offline use)."""
    try:
        builder = tfds.builder(
            config.dataset, data_dir=config.tfds_data_dir, file_format="array_record"
        )
    except Exception as e:  # TFDS raises several types for unknown names.
        raise DataError(
            f"Unknown dataset {config.dataset!r}: use 'python_stdlib', 'text_files' or a TFDS "
            f"catalog name ({e})."
        ) from e
    if not builder.is_prepared():
        raise DataError(
            f"TFDS dataset {config.dataset!r} is not prepared under {builder.data_dir}. Prepare it "
            "first with file_format='array_record' (e.g. `tfds build "
            f"{config.dataset} --file_format=array_record`) or set DataConfig.tfds_data_dir."
        )
    features = builder.info.features
    if hasattr(features, "keys") and config.text_key not in features.keys():
        raise DataError(
            f"TFDS dataset {config.dataset!r} has no feature {config.text_key!r} "
            f"(features: {sorted(features.keys())}); set DataConfig.text_key."
        )
    available = set(builder.info.splits.keys())
    validation = next((s for s in ("validation", "test") if s in available), None)
    if "train" not in available:
        raise DataError(
            f"TFDS dataset {config.dataset!r} has no train split ({sorted(available)})."
        )
    if validation is None:
        log.warning(
            "TFDS dataset %s has no validation/test split; validation is empty.", config.dataset
        )
    try:
        sources = {"train": builder.as_data_source("train")}
        sources["validation"] = builder.as_data_source(validation) if validation else []
    except Exception as e:
        raise DataError(
            f"Cannot read TFDS dataset {config.dataset!r} as ArrayRecord ({e}); re-prepare it "
            "with file_format='array_record'."
        ) from e
    if config.max_documents is not None:
        sources = {s: _Head(src, config.max_documents) for s, src in sources.items()}
    fp = hashlib.sha256(
        f"{builder.data_path}:{builder.version}:{config.text_key}:{config.max_documents}".encode()
    ).hexdigest()[:16]
    stats = {s: {"documents": len(src), "skipped": {}} for s, src in sources.items()}
    return RawCorpus(
        name=f"{builder.name}:{builder.version}",
        fingerprint=fp,
        splits=sources,
        text_key=config.text_key,
        stats=stats,
        path=str(builder.data_path),
    )


@dataclasses.dataclass(frozen=True)
class _Head:
    """The first `n` items of a random-access source."""

    source: Sequence[Any]
    n: int

    def __len__(self) -> int:
        return min(len(self.source), self.n)

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.source[i]


def load_raw_corpus(config: DataConfig, data_dir: pathlib.Path) -> RawCorpus:
    """Builds (once) or opens the raw corpus named by `config.dataset`."""
    if not 0.0 <= config.validation_fraction < 1.0:
        raise DataError(
            f"DataConfig.validation_fraction must be in [0, 1); got {config.validation_fraction}."
        )
    if config.max_documents is not None and config.max_documents <= 0:
        raise DataError(f"DataConfig.max_documents must be positive; got {config.max_documents}.")
    if config.dataset in builders.BUILDERS:
        corpus = _build(config, data_dir)
    else:
        corpus = _catalog(config)
    if len(corpus.splits["train"]) + len(corpus.splits["validation"]) == 0:
        skipped = {s: st.get("skipped", {}) for s, st in corpus.stats.items()}
        raise DataError(
            f"Corpus {corpus.name} has no usable documents (skipped: {skipped}). Check "
            "DataConfig.paths / text_key; documents must be non-empty UTF-8 text."
        )
    return corpus


class Documents(Protocol):
    """Random-access documents (a split's source, or part of one), as `iter_texts` reads them:
    by index, or through `__getitems__` where the source has it."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


def iter_texts(
    source: Documents, text_key: str, chunk: int = 256
) -> Iterator[tuple[str | None, str | None]]:
    """Yields (text, None) or (None, skip_reason) for every item, in order."""
    n = len(source)
    for start in range(0, n, chunk):
        idx = list(range(start, min(start + chunk, n)))
        getitems = getattr(source, "__getitems__", None)
        items = getitems(idx) if getitems else [source[i] for i in idx]
        for item in items:
            yield documents_lib.to_text(item[text_key] if isinstance(item, Mapping) else item)
