"""`tinylm info`: parameter counts, FLOPs and memory of a config (nothing allocated; no data,
checkpoint or plotting library imported)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from tinylm_jax.cli import common


def add_info(commands) -> None:
    parser = commands.add_parser("info", help="parameter counts, FLOPs and memory of a config")
    parser.add_argument("--seq_len", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    common.add_gin_flags(parser)
    parser.set_defaults(fn=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    config = common.run_config(args)
    from tinylm_jax.model.counting import model_stats

    stats = model_stats(config.model, args.seq_len or config.train.seq_len).as_dict()
    if not args.json:
        print(format_stats(stats))
        return 0
    # The config's shape and token budget too: orchestration plans runs from these.
    train_tokens = config.train.num_steps * config.train.tokens_per_step
    model = dataclasses.asdict(config.model)
    tokens = {"train_tokens": train_tokens, "tokens_per_step": config.train.tokens_per_step}
    print(json.dumps({**stats, **tokens, "model": model}))
    return 0


def format_stats(stats: dict) -> str:
    """`model_stats(...).as_dict()` as the table `tinylm info` prints."""
    gib = 1024**3
    return (
        f"parameters        {stats['total_params']:>16,}\n"
        f"  embedding+head  {stats['embedding_params']:>16,}  "
        f"({100 * stats['embedding_share']:.2f}%)\n"
        f"  non-embedding   {stats['non_embedding_params']:>16,}\n"
        + "".join(f"    {k:<14}{v:>16,}\n" for k, v in stats["component_params"].items())
        + f"FLOPs per token   {stats['flops_per_token']:>16.4g}  (training, fwd+bwd)\n"
        f"params memory     {stats['param_bytes'] / gib:>16.3f} GiB\n"
        f"+ AdamW state     {stats['train_state_bytes'] / gib:>16.3f} GiB"
    )
