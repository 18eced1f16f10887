"""`tinylm train`: train, resuming from the workdir if possible."""

from __future__ import annotations

import argparse
import sys

from tinylm_jax.cli import common


def add_train(commands) -> None:
    parser = commands.add_parser("train", help="train, resuming from the workdir if possible")
    parser.add_argument("--workdir", required=True)
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    parser.add_argument(
        "--heartbeat_timeout_seconds",
        type=int,
        default=None,
        help="multi-process: exit this long after a peer process dies (default: JAX's, 100)",
    )
    parser.add_argument(
        "--profile_steps",
        default=None,
        help="A:B: a jax.profiler trace of the steps after step A up to step B, into "
        "WORKDIR/tensorboard (TensorBoard's profile plugin opens it)",
    )
    parser.set_defaults(fn=cmd_train)


def cmd_train(args: argparse.Namespace, hooks=None) -> int:
    common.initialize_distributed(args, heartbeat_timeout_seconds=args.heartbeat_timeout_seconds)
    from tinylm_jax import layout

    saved = layout.config_file(args.workdir)
    # Resuming: the saved operative config first, so the run continues as it was configured.
    config = common.run_config(args, workdir_config=saved if saved.exists() else None)
    common.use_compilation_cache(config)
    from tinylm_jax.train.loop import PREEMPTED_EXIT_CODE, Preempted, train
    from tinylm_jax.train.profile import parse_steps

    profile_steps = parse_steps(args.profile_steps)  # a bad spec fails before any work

    if config.data.tokenizer is not None:
        from tinylm_jax.data.tokenizer import load_tokenizer

        load_tokenizer(config.data.tokenizer)  # a bad tokenizer fails before data preparation
    try:
        train(config, args.workdir, hooks, profile_steps)
    except Preempted as preempted:
        print(f"tinylm train: {preempted}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0
