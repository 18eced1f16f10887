"""`tinylm tokenizer train` and `tinylm tokenizer compress`: SentencePiece training on the
data config's corpus; PanGu-style compression (also of a byte-level BPE tokenizer.json)."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_tokenizer(commands) -> None:
    parser = commands.add_parser(
        "tokenizer", help="SentencePiece training; compression (also of a BPE tokenizer.json)"
    )
    tokenizer_commands = parser.add_subparsers(dest="tokenizer_command", required=True)
    train = tokenizer_commands.add_parser("train", help="train one on DataConfig's corpus")
    train.add_argument("--out", required=True, help="path of the .model to write")
    common.add_gin_flags(train)
    train.set_defaults(fn=cmd_tokenizer_train)
    _add_compress(tokenizer_commands)


def _add_compress(tokenizer_commands) -> None:
    compress = tokenizer_commands.add_parser(
        "compress",
        help="PanGu-style pruning to the most frequent pieces; writes tokenizer.model (or "
        "tokenizer.json), id_map.npy/.json and report.json",
    )
    compress.add_argument(
        "--tokenizer",
        help="the big .model or byte-level BPE tokenizer.json (or its directory) to prune "
        "(default: DataConfig's tokenizer)",
    )
    target = compress.add_mutually_exclusive_group(required=True)
    target.add_argument("--vocab_size", type=int, help="exact size of the compressed tokenizer")
    target.add_argument(
        "--coverage", type=float, help="smallest size whose pieces cover this fraction of tokens"
    )
    compress.add_argument("--out", required=True, help="output directory")
    compress.add_argument(
        "--sample_documents",
        type=int,
        default=2000,
        help="training documents re-encoded to measure tokens per byte before/after",
    )
    compress.add_argument("--json", action="store_true", help="print the report as JSON")
    common.add_gin_flags(compress)
    compress.set_defaults(fn=cmd_tokenizer_compress)


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    config = common.run_config(args)
    from tinylm_jax.data.pipeline import train_tokenizer_for

    print(train_tokenizer_for(config.data, args.out))
    return 0


def cmd_tokenizer_compress(args: argparse.Namespace) -> int:
    config = common.run_config(args)
    from tinylm_jax.data.pipeline import train_tokenizer_for
    from tinylm_jax.recipes.pangu import tokenizer_compression

    report = tokenizer_compression.compress_corpus(
        config.data,
        args.tokenizer or train_tokenizer_for(config.data),
        args.out,
        vocab_size=args.vocab_size,
        coverage=args.coverage,
        model_config=config.model,
        sample_documents=args.sample_documents,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(tokenizer_compression.format_report(report))
    return 0
