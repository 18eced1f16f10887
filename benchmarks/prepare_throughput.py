"""Tokens per second of data preparation: today's single-host path vs `tinylm data prepare`
on Beam's DirectRunner with 1 and 2 worker processes.

  python benchmarks/prepare_throughput.py [--max_documents 1500] [--repeats 2] \
      [--vocab_size 2048] [--seq_len 512]

The corpus (the Python standard library) and the tokenizer are built first and cached, so
every timed run does the same work: tokenize and pack both splits and write ArrayRecord.
The three paths run alternately `--repeats` times (the median of each is printed, with its
ratio to Beam with 1 worker). Beam's time includes its pipeline start-up and worker
launch. First, the machine's parallel headroom is probed: the throughput of 2 processes
running a fixed CPU-bound task at once, relative to 1 alone (2.0 on 2 idle cores; about 1.0
when other jobs already fill them, and then no 2-worker run can scale). Ends with one JSON
line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import beam_prepare, corpus, packing, pipeline


def _single_host(config: DataConfig, seq_len: int, out: str) -> int:
    _, raw, tokenizer = pipeline.corpus_and_tokenizer(config)
    splits = {s: corpus.iter_texts(src, raw.text_key) for s, src in raw.splits.items()}
    manifest = packing.build_packed(
        pathlib.Path(out), splits, tokenizer, seq_len, config.num_workers, extra={}
    )
    return sum(s["tokens"] for s in manifest["splits"].values())


def _beam(config: DataConfig, seq_len: int, out: str, workers: int) -> int:
    manifest = beam_prepare.prepare(config, seq_len, out, num_workers=workers)
    return sum(s["tokens"] for s in manifest["splits"].values())


_BUSY = "x = 0\nfor i in range(15_000_000):\n    x += i\n"


def parallel_headroom(repeats: int = 3) -> float:
    """Throughput of 2 concurrent CPU-bound processes over 1 (alternating, medians)."""

    def wall(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    one, two = [], []
    for _ in range(repeats):
        one.append(wall(1))
        two.append(wall(2))
    return 2 * statistics.median(one) / statistics.median(two)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_documents", type=int, default=1500)
    parser.add_argument("--vocab_size", type=int, default=2048)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="prepare_throughput-")
    config = DataConfig(
        max_documents=args.max_documents,
        vocab_size=args.vocab_size,
        data_dir=os.path.join(root, "cache"),
        prepare_chunk_documents=64,
    )
    pipeline.corpus_and_tokenizer(config)  # built once, outside the timings
    headroom = parallel_headroom()
    print(f"parallel headroom (2 CPU-bound processes vs 1): {headroom:.2f}x")
    runs = {
        "single_host": lambda out: _single_host(config, args.seq_len, out),
        "beam_1_worker": lambda out: _beam(config, args.seq_len, out, 1),
        "beam_2_workers": lambda out: _beam(config, args.seq_len, out, 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            out = os.path.join(root, f"{name}-{repeat}")
            start = time.perf_counter()
            tokens = run(out)
            seconds = time.perf_counter() - start
            rates[name].append(tokens / seconds)
            print(f"{name}: {tokens:,} tokens in {seconds:.2f} s = {tokens / seconds:,.0f} tok/s")
            shutil.rmtree(out)
    median = {name: statistics.median(r) for name, r in rates.items()}
    base = median["beam_1_worker"]
    print("| path | tokens/s (median) | vs Beam 1 worker |\n|---|---|---|")
    for name, rate in median.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    result = {"tokens": tokens, "tokens_per_second": median, "parallel_headroom": headroom}
    result["config"] = dataclasses.asdict(config)
    print(json.dumps(result))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
