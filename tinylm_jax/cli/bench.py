"""`tinylm bench`: compiled train-step throughput, MFU, step times, compile time, memory."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_bench(commands) -> None:
    parser = commands.add_parser(
        "bench", help="compiled train-step throughput, MFU, step times, compile time, memory"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic token batch")
    parser.add_argument(
        "--compile_only",
        action="store_true",
        help="compile the train step on abstract inputs (nothing allocated) and print XLA's "
        "memory plan instead of timing steps",
    )
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    parser.set_defaults(fn=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    common.initialize_distributed(args)
    config = common.run_config(args)
    common.use_compilation_cache(config)
    from tinylm_jax.train.bench import bench, memory_plan, plan_summary, summary

    if args.compile_only:
        plan = memory_plan(config)
        print(plan_summary(plan))
        print(json.dumps(plan.as_dict()), flush=True)
        return 0
    result = bench(config, steps=args.steps, warmup_steps=args.warmup_steps, seed=args.seed)
    print(summary(result))
    print(json.dumps(result.as_dict()), flush=True)
    return 0
