"""`tinylm data prepare`: tokenizing and packing as an Apache Beam pipeline.

The records are those of the single-host path (`packing.py`), byte for byte: documents
are cut into chunks of `prepare_chunk_documents` by their index in the split; each chunk
is tokenized on its own; a prefix sum over the chunks' token counts places every chunk in
the split's token stream; each chunk then cuts its tokens into pieces of the records
they fall in (record r covers stream offsets [r * (seq_len + 1), (r + 1) * (seq_len + 1)));
a GroupByKey on r assembles the records, and a GroupByKey on r // records_per_shard
writes the shards in id order. Every key comes from document order and offsets, never
from arrival order, so the output does not depend on the runner or its number of workers.

The raw corpus (TFDS build) and the tokenizer (trained on a sample) are single steps run
by the launching process before the pipeline, cached as in the single-host path.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from etils import epath

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data import packing, pipeline
from tinylm_jax.data import prepared as prepared_lib
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

STATS_DIR = "_stats"


def check_runner(runner: str) -> None:
    """An unknown runner (or one whose extra is missing) fails before any work."""
    from apache_beam.runners import create_runner

    try:
        create_runner(runner)
    except (ValueError, ImportError) as e:
        raise DataError(
            f"--runner={runner} is not a Beam runner this installation can use ({e}). Use "
            "DirectRunner (local), DataflowRunner (pip install 'apache-beam[gcp]'), "
            "FlinkRunner or SparkRunner."
        ) from e


def pipeline_options(runner: str, num_workers: int, beam_args: Sequence[str]) -> PipelineOptions:
    """DirectRunner runs `num_workers` local worker processes; other runners get
    `--num_workers` and every passthrough option (project, region, master, ...)."""
    args = [f"--runner={runner}", *beam_args]
    if runner == "DirectRunner":
        args += [f"--direct_num_workers={num_workers}", "--direct_running_mode=multi_processing"]
    else:
        args.append(f"--num_workers={num_workers}")
    return PipelineOptions(args, save_main_session=False)


class _Range:
    """Documents [start, stop) of a random-access source."""

    def __init__(self, source: Sequence[Any], start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> Any:
        return self.source[self.start + i]


class _Tokenize(beam.DoFn):
    """(chunk, start, stop) -> (chunk, (document lengths, tokens, skipped counts))."""

    def __init__(self, config: DataConfig, data_dir: str, tokenizer: str, split: str):
        self._config, self._data_dir, self._tokenizer_path = config, data_dir, tokenizer
        self._split = split

    def setup(self) -> None:
        raw = corpus_lib.load_raw_corpus(self._config, pathlib.Path(self._data_dir))
        self._source, self._text_key = raw.splits[self._split], raw.text_key
        self._tokenizer = load_tokenizer(self._tokenizer_path)

    def process(self, chunk: tuple[int, int, int]) -> Iterator[tuple[int, Any]]:
        index, start, stop = chunk
        skipped: Counter = Counter()
        texts = corpus_lib.iter_texts(_Range(self._source, start, stop), self._text_key)
        docs = list(packing.tokenize_documents(texts, self._tokenizer, 1, skipped))
        lengths = np.array([len(d) for d in docs], np.int64)
        tokens = np.concatenate(docs) if docs else np.zeros(0, np.int32)
        yield index, (lengths, tokens, dict(skipped))


def _layout(totals: list[tuple[int, int]]) -> tuple[dict[int, int], int]:
    """Stream offset of every chunk (by chunk index, not arrival) and the split's tokens."""
    starts, offset = {}, 0
    for index, total in sorted(totals):
        starts[index] = offset
        offset += total
    return starts, offset


def _pieces(element, layout, record_len: int) -> Iterator[tuple[int, Any]]:
    """A chunk's tokens cut at record boundaries: (record id, (offset in record, tokens,
    document-start marks))."""
    index, (lengths, tokens, _) = element
    if not len(tokens):
        return
    start = layout[0][index]
    marks = np.zeros(len(tokens), bool)
    marks[np.cumsum(lengths) - lengths] = True
    for record in range(start // record_len, (start + len(tokens) - 1) // record_len + 1):
        lo = max(record * record_len, start) - start
        hi = min((record + 1) * record_len, start + len(tokens)) - start
        yield record, (start + lo - record * record_len, tokens[lo:hi], marks[lo:hi])


def _assemble(element, record_len: int, pad_id: int) -> tuple[int, bytes]:
    """One record as `packing.Packer` makes it: a segment per document piece, positions
    from 0 at every piece start (documents, and the record's first token)."""
    record, pieces = element
    pieces = sorted(pieces, key=lambda p: p[0])
    tokens = np.concatenate([p[1] for p in pieces])
    marks = np.concatenate([p[2] for p in pieces])
    n = len(tokens)
    marks[0] = True
    rec = np.zeros((3, record_len), np.int32)
    rec[0, :n], rec[0, n:] = tokens, pad_id
    rec[1, :n] = np.cumsum(marks)
    piece_start = np.maximum.accumulate(np.where(marks, np.arange(n), 0))
    rec[2, :n] = np.arange(n) - piece_start
    return record, rec.tobytes()


class _WriteShard(beam.DoFn):
    """(shard, [(record id, bytes)]) -> one ArrayRecord file, records in id order."""

    def __init__(self, out: str, split: str, records_per_shard: int, record_len: int):
        self._out, self._split = out, split
        self._rps, self._record_len = records_per_shard, record_len

    def process(self, element, layout) -> Iterator[str]:
        shard, records = element
        total_records = -(-layout[1] // self._record_len)
        name = prepared_lib.shard_name(
            self._split, shard, prepared_lib.num_shards(total_records, self._rps)
        )
        ordered = (data for _, data in sorted(records, key=lambda r: r[0]))
        prepared_lib.write_shard(ordered, epath.Path(self._out), name)
        yield name


def _merge_stats(chunks: list[tuple[int, Any]]) -> dict[str, Any]:
    skipped: Counter = Counter()
    documents = tokens = 0
    for _, (lengths, toks, chunk_skipped) in chunks:
        documents += len(lengths)
        tokens += len(toks)
        skipped.update(chunk_skipped)
    return {"documents": documents, "tokens": tokens, "skipped": dict(skipped)}


def _split_pipeline(p, split: str, n_docs: int, config: DataConfig, ctx: dict[str, Any]) -> None:
    record_len = ctx["seq_len"] + 1
    step = config.prepare_chunk_documents
    chunks = [(i, s, min(s + step, n_docs)) for i, s in enumerate(range(0, n_docs, step))]
    tokenized = (
        p
        | f"{split}/chunks" >> beam.Create(chunks, reshuffle=True)
        | f"{split}/tokenize"
        >> beam.ParDo(_Tokenize(config, ctx["data_dir"], ctx["tokenizer"], split))
    )
    layout = beam.pvalue.AsSingleton(
        tokenized
        | f"{split}/totals" >> beam.Map(lambda kv: (kv[0], len(kv[1][1])))
        | f"{split}/gather" >> beam.combiners.ToList()
        | f"{split}/layout" >> beam.Map(_layout)
    )
    _ = (
        tokenized
        | f"{split}/pieces" >> beam.FlatMap(_pieces, layout, record_len)
        | f"{split}/by_record" >> beam.GroupByKey()
        | f"{split}/assemble" >> beam.Map(_assemble, record_len, ctx["pad_id"])
        | f"{split}/to_shard" >> beam.Map(lambda r: (r[0] // config.records_per_shard, r))
        | f"{split}/by_shard" >> beam.GroupByKey()
        | f"{split}/write"
        >> beam.ParDo(_WriteShard(ctx["out"], split, config.records_per_shard, record_len), layout)
    )
    stats_path = os.fspath(epath.Path(ctx["out"]) / STATS_DIR / f"{split}.json")
    _ = (
        tokenized
        | f"{split}/stats_list" >> beam.combiners.ToList()
        | f"{split}/stats" >> beam.Map(_merge_stats)
        | f"{split}/stats_write" >> beam.Map(lambda s: write_atomically(stats_path, json.dumps(s)))
    )


def prepare(
    config: DataConfig,
    seq_len: int,
    out: str,
    runner: str = "DirectRunner",
    num_workers: int = 1,
    beam_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Prepares the dataset of `config` at `seq_len` into `out`; returns its manifest.

    A finished dataset with the same fingerprint is reused as it is.
    """
    if seq_len <= 0:
        raise DataError(f"TrainConfig.seq_len must be positive; got {seq_len}.")
    if num_workers < 1:
        raise DataError(f"--num_workers must be at least 1; got {num_workers}.")
    check_runner(runner)
    data_dir, raw, tokenizer = pipeline.corpus_and_tokenizer(config)
    fingerprint = prepared_lib.fingerprint(raw.fingerprint, tokenizer, seq_len)
    root = epath.Path(out)
    finished = prepared_lib.start_output(root, fingerprint, tokenizer)
    if finished is not None:
        return finished
    (root / STATS_DIR).mkdir(exist_ok=True)
    ctx = {
        "seq_len": seq_len,
        "data_dir": str(data_dir),
        "tokenizer": tokenizer.path,
        "pad_id": tokenizer.pad_id,
        "out": os.fspath(root),
    }
    with beam.Pipeline(options=pipeline_options(runner, num_workers, beam_args)) as p:
        for split, source in raw.splits.items():
            _split_pipeline(p, split, len(source), config, ctx)
    return _write_manifest(root, config, raw, tokenizer, seq_len)


def _write_manifest(root, config, raw, tokenizer, seq_len) -> dict[str, Any]:
    splits = {}
    for split in raw.splits:
        stats = json.loads((root / STATS_DIR / f"{split}.json").read_text())
        raw_stats = raw.stats.get(split, {})
        skipped = Counter(raw_stats.get("skipped", {}))
        skipped.update(stats["skipped"])
        splits[split] = {**stats, "skipped": dict(skipped), "bytes": raw_stats.get("bytes")}
    return prepared_lib.write_manifest(
        root, raw, tokenizer, seq_len, config.records_per_shard, splits
    )
