"""Loader throughput on the python_stdlib corpus with a demo-like setup.

  python benchmarks/loader_throughput.py [--seq_len 256] [--batch_size 16] [--vocab_size 8192]

Prepares (or reuses) the corpus, tokenizer and packed records, then times the
train iterator and prints JSON: sequences/s and tokens/s, plus prep time.
"""

from __future__ import annotations

import argparse
import json
import time

from tinylm_jax.config.data import DataConfig
from tinylm_jax.data.pipeline import make_train_iterator, prepare_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--loader_workers", type=int, default=0)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()

    config = DataConfig(
        dataset="python_stdlib",
        vocab_size=args.vocab_size,
        data_dir=args.data_dir,
        loader_workers=args.loader_workers,
    )
    start = time.perf_counter()
    data = prepare_data(config, args.seq_len)
    prep_s = time.perf_counter() - start

    it = make_train_iterator(data, args.batch_size, seed=0)
    next(it)  # Start-up (thread pools, file handles) is not throughput.
    start = time.perf_counter()
    real_tokens = 0.0
    for _ in range(args.batches):
        batch = next(it)
        real_tokens += float(batch["weights"].sum())
    seconds = time.perf_counter() - start
    sequences = args.batches * args.batch_size
    print(
        json.dumps(
            {
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
                "vocab_size": data.tokenizer.vocab_size,
                "loader_workers": args.loader_workers,
                "train_records": len(data.train),
                "prepare_seconds": round(prep_s, 2),
                "batches": args.batches,
                "seconds": round(seconds, 3),
                "sequences_per_s": round(sequences / seconds, 1),
                "tokens_per_s": round(sequences * args.seq_len / seconds, 1),
                "real_tokens_per_s": round(real_tokens / seconds, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
