"""`tinylm info`: parameter counts, FLOPs and memory of a config (nothing allocated; no data,
checkpoint or plotting library imported)."""

from __future__ import annotations

import argparse
import dataclasses
import json

from tinylm_jax.cli import common


def add_info(commands) -> None:
    parser = commands.add_parser("info", help="parameter counts, FLOPs and memory of a config")
    parser.add_argument(
        "--seq_len",
        type=int,
        default=None,
        help="tokens per sequence (default: TrainConfig.seq_len)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    common.add_gin_flags(parser)
    parser.set_defaults(fn=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    config = common.run_config(args)
    from tinylm_jax.model.counting import model_stats

    stats = model_stats(config.model, args.seq_len or config.train.seq_len).as_dict()
    stats["optimizer"] = config.optimizer.name
    stats["optimizer_state_bytes"] = optimizer_state_bytes(config)
    import jax

    # 'auto' resolves on the backend this process sees (bfloat16 on GPU/TPU, float32 on CPU).
    stats["compute_dtype"] = config.model.resolved_dtype
    stats["platform"] = jax.default_backend()
    if not args.json:
        print(format_stats(stats))
        return 0
    # The config's shape and token budget too: orchestration plans runs from these.
    train_tokens = config.train.num_steps * config.train.tokens_per_step
    model = dataclasses.asdict(config.model)
    tokens = {"train_tokens": train_tokens, "tokens_per_step": config.train.tokens_per_step}
    print(json.dumps({**stats, **tokens, "model": model}))
    return 0


def optimizer_state_bytes(config) -> int:
    """Bytes of `OptimizerConfig.name`'s state for the model, from shapes only."""
    import jax
    import numpy as np

    from tinylm_jax.engine.optimizer import make_optimizer
    from tinylm_jax.model.counting import abstract_params

    tx, _ = make_optimizer(config.optimizer, config.train.num_steps)
    params = jax.tree.map(
        lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype),
        abstract_params(config.model),
        is_leaf=lambda x: hasattr(x, "shape"),
    )
    state = jax.eval_shape(tx.init, params)
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))


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
        + "{:<18}{:>16.3f} GiB".format(
            f"+ {stats.get('optimizer', 'adamw')} state",
            (stats["param_bytes"] + stats.get("optimizer_state_bytes", stats["adam_state_bytes"]))
            / gib,
        )
        + (
            f"\ncompute dtype     {stats['compute_dtype']:>16}  (on {stats['platform']})"
            if "compute_dtype" in stats
            else ""
        )
    )
