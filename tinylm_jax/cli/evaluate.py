"""`tinylm eval`, `score` and `sample`: read a trained workdir (held-out metrics and
multiple-choice tasks, per-record losses, generated text)."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common
from tinylm_jax.cli.cmc import add_delta_flags, delta_flags


def add_eval(commands) -> None:
    parser = commands.add_parser(
        "eval", help="held-out loss, perplexity, bits per byte; multiple-choice tasks"
    )
    parser.add_argument("--workdir", required=True, help="a trained (or imported) run's workdir")
    parser.add_argument(
        "--eval_steps",
        type=int,
        default=None,
        help="batches to evaluate (default: the whole validation split; 0 skips held-out eval)",
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        help='multiple-choice JSONL task ({"context", "choices", "answer"} per line; repeatable)',
    )
    common.add_gin_flags(parser)
    add_delta_flags(parser)
    parser.set_defaults(fn=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    config = common.workdir_run_config(args)
    common.use_compilation_cache(config)
    from tinylm_jax.workdir.load import evaluate_workdir

    result = evaluate_workdir(config, args.workdir, args.eval_steps, args.task, delta_flags(args))
    print(json.dumps(result))
    return 0


def add_score(commands) -> None:
    parser = commands.add_parser(
        "score",
        help="per-record losses of a split under a trained workdir (JSONL: id, loss, tokens)",
    )
    parser.add_argument("--workdir", required=True, help="a trained (or imported) run's workdir")
    parser.add_argument(
        "--split", default="train", choices=["train", "validation"], help="records to score"
    )
    parser.add_argument("--out", required=True, help="JSONL file to write (local or gs://)")
    parser.add_argument(
        "--batch_size", type=int, default=None, help="global batch (default: the eval batch size)"
    )
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    add_delta_flags(parser)
    parser.set_defaults(fn=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    common.initialize_distributed(args)
    config = common.workdir_run_config(args)
    common.use_compilation_cache(config)
    from tinylm_jax.workdir.load import write_workdir_scores

    summary = write_workdir_scores(
        config, args.workdir, args.split, args.out, args.batch_size, delta_flags(args)
    )
    if summary is not None:  # process 0 wrote the scores
        print(json.dumps(summary))
    return 0


def add_sample(commands) -> None:
    from tinylm_jax.config.sampling import SamplingConfig

    parser = commands.add_parser("sample", help="generate text from a trained workdir")
    parser.add_argument("--workdir", required=True, help="a trained (or imported) run's workdir")
    parser.add_argument("--prompt", action="append", required=True, help="repeatable")
    defaults = SamplingConfig()
    parser.add_argument(
        "--max_new_tokens", type=int, default=defaults.max_new_tokens, help="tokens to generate"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=defaults.temperature,
        help="softmax temperature; 0 is greedy (which makes small models loop)",
    )
    parser.add_argument(
        "--top_k", type=int, default=defaults.top_k, help="keep the k likeliest tokens; 0: all"
    )
    parser.add_argument(
        "--top_p", type=float, default=defaults.top_p, help="nucleus: smallest set with mass p"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="sampling seed (same seed, same text)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per prompt: prompt, completion, ids"
    )
    common.add_gin_flags(parser)
    add_delta_flags(parser)
    parser.set_defaults(fn=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    config = common.workdir_run_config(args)
    common.use_compilation_cache(config)
    from tinylm_jax.config.sampling import SamplingConfig
    from tinylm_jax.workdir.load import sample_workdir

    sampling = SamplingConfig(
        args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    for result in sample_workdir(config, args.workdir, args.prompt, sampling, delta_flags(args)):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"--- prompt: {result['prompt']!r}\n{result['prompt']}{result['completion']}")
    return 0
