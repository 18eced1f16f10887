"""`tinylm train`: train, resuming from the workdir if possible."""

from __future__ import annotations

import argparse
import sys

from tinylm_jax.cli import common
from tinylm_jax.errors import ConfigError


def add_train(commands) -> None:
    parser = commands.add_parser("train", help="train, resuming from the workdir if possible")
    parser.add_argument(
        "--workdir",
        help="run directory (local or gs://); resumed if it has checkpoints (required unless "
        "--print_config)",
    )
    parser.add_argument(
        "--print_config",
        action="store_true",
        help="print the operative config (every field, derived values resolved) and exit "
        "without reading data; with --workdir, the config its resume would run",
    )
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    parser.add_argument(
        "--heartbeat_timeout_seconds",
        type=int,
        default=15,
        help="multi-process: a peer silent this long is dead; the others stop (exit 75)",
    )
    parser.add_argument(
        "--profile_steps",
        default=None,
        help="A:B: a jax.profiler trace of the steps after step A up to step B, into "
        "WORKDIR/tensorboard (TensorBoard's profile plugin opens it)",
    )
    parser.set_defaults(fn=cmd_train)


def cmd_train(args: argparse.Namespace, hooks=None) -> int:
    if args.print_config:
        print(operative_config(_config(args)), end="")
        return 0
    if not args.workdir:
        raise ConfigError("tinylm train needs --workdir=DIR (the run directory)")
    common.initialize_distributed(args, heartbeat_timeout_seconds=args.heartbeat_timeout_seconds)
    config = _config(args)
    common.use_compilation_cache(config)
    from tinylm_jax.train.faults import PEER_LOST_EXIT_CODE, PeerLost
    from tinylm_jax.train.loop import train
    from tinylm_jax.train.profile import parse_steps

    profile_steps = parse_steps(args.profile_steps)  # a bad spec fails before any work

    if config.data.tokenizer is not None:
        from tinylm_jax.data.tokenizer import load_tokenizer

        load_tokenizer(config.data.tokenizer)  # a bad tokenizer fails before data preparation
    try:
        train(config, args.workdir, hooks, profile_steps)
    except PeerLost as lost:
        import os

        print(f"tinylm train: {lost}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # The distributed runtime's shutdown waits for the dead peer (minutes): exit now.
        os._exit(PEER_LOST_EXIT_CODE)
    return 0


def _config(args: argparse.Namespace):
    if not args.workdir:
        return common.run_config(args)
    from tinylm_jax import layout

    saved = layout.config_file(args.workdir)
    # Resuming: the saved operative config first, so the run continues as it was configured.
    return common.run_config(args, workdir_config=saved if saved.exists() else None)


def operative_config(config) -> str:
    """The run's gin text (every field of every config) and, as comments, what it derives."""
    import jax.numpy as jnp

    from tinylm_jax.engine.optimizer import resolve_warmup
    from tinylm_jax.model.counting import model_stats

    model, train = config.model, config.train
    stats = model_stats(model, train.seq_len)
    derived = {
        "TrainConfig.num_steps": train.num_steps,
        "tokens per step": train.tokens_per_step,
        "tokens in the run": train.num_steps * train.tokens_per_step,
        "warmup steps": resolve_warmup(config.optimizer, train.num_steps),
        "ModelConfig.head_dim": model.resolved_head_dim,
        "ModelConfig.n_kv_heads": model.resolved_n_kv_heads,
        "ModelConfig.ffn_dim": model.resolved_ffn_dim,
        "compute dtype": jnp.dtype(model.compute_dtype).name,
        "parameter dtype": jnp.dtype(model.weight_dtype).name,
        "parameters": f"{stats.total_params:,}",
    }
    lines = [f"#   {name} = {value}" for name, value in derived.items()]
    return config.gin_config.rstrip("\n") + "\n\n# Resolved:\n" + "\n".join(lines) + "\n"
