"""`tinylm cmc train` (a delta model beside a frozen template) and `tinylm cmc map` (the
PM-MinED token map from a user model's vocabulary to a delta's); Cross-model Control,
arXiv 2410.17599."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_cmc(commands) -> None:
    parser = commands.add_parser("cmc", help="Cross-model Control: delta models, token maps")
    sub = parser.add_subparsers(dest="cmc_command", required=True)
    train = sub.add_parser("train", help="train a delta model beside a frozen template")
    train.add_argument("--template", required=True, help="the frozen template's workdir")
    train.add_argument("--workdir", required=True, help="the delta's workdir (resumed if present)")
    train.add_argument(
        "--data", required=True, help='JSONL: {"prompt","response"} or {"text","forget"}'
    )
    train.add_argument(
        "--delta_init", help="a trained small model's workdir: the delta's model and initial params"
    )
    common.add_gin_flags(train)
    common.add_distributed_flags(train)
    train.set_defaults(fn=cmd_cmc_train, accepts_train_hooks=True)
    mapping = sub.add_parser("map", help="write the PM-MinED token map user -> delta and a report")
    mapping.add_argument("--user", required=True, help="the user model's workdir")
    mapping.add_argument("--delta", required=True, help="the delta model's workdir")
    mapping.add_argument("--out", required=True, help="the map file (JSON) to write")
    mapping.set_defaults(fn=cmd_cmc_map)


def cmd_cmc_train(args: argparse.Namespace, hooks=None) -> int:
    common.initialize_distributed(args)
    from tinylm_jax import layout
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.workdir.load import config_path

    template_config = config_lib.parse(workdir_config=config_path(args.template))
    delta_init = None
    if args.delta_init:
        init_config = config_lib.parse(workdir_config=config_path(args.delta_init))
        delta_init = (init_config, args.delta_init)
    saved = layout.config_file(args.workdir)
    # Resuming: the delta's saved config; else it starts from the config of the model it is
    # initialized from (or the template's: same tokenizer, data and vocabulary), then flags.
    base = saved if saved.exists() else config_path(args.delta_init or args.template)
    config = common.run_config(args, workdir_config=base)
    from tinylm_jax.recipes.cmc.train import cmc_train

    cmc_train(config, template_config, args.template, args.workdir, args.data, delta_init, hooks)
    return 0


def cmd_cmc_map(args: argparse.Namespace) -> int:
    from tinylm_jax.data.token_map import build_map, write_map
    from tinylm_jax.workdir.load import tokenizer_of

    token_map = build_map(tokenizer_of(args.user), tokenizer_of(args.delta))
    write_map(token_map, args.out)
    print(json.dumps({"out": args.out, **token_map.report()}, indent=1))
    return 0


def add_delta_flags(parser: argparse.ArgumentParser) -> None:
    """`--delta`, `--alpha`, `--token_map` for the commands that use a model (sample, eval,
    score)."""
    parser.add_argument(
        "--delta", help="a `tinylm cmc train` workdir whose logit shift joins the model's"
    )
    parser.add_argument(
        "--alpha", type=float, default=None, help="the delta's weight; unset: its CMCConfig.alpha"
    )
    parser.add_argument("--token_map", help="a `tinylm cmc map` file (other vocabularies)")


def delta_flags(args: argparse.Namespace):
    """The `DeltaFlags` of the parsed flags, or None without --delta."""
    if not args.delta:
        if args.alpha is not None or args.token_map:
            from tinylm_jax.errors import ConfigError

            raise ConfigError("--alpha and --token_map go with --delta")
        return None
    from tinylm_jax.workdir.delta import DeltaFlags

    return DeltaFlags(args.delta, args.alpha, args.token_map)
