"""The `tinylm` command line: one subcommand per job (`tinylm --help` lists them)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from tinylm_jax.errors import ConfigError, DataError

# Each command, in `tinylm --help` order: the "module:function" that registers its flags and
# handler on the subparsers (`function(commands)`, which calls `commands.add_parser(name, ...)`).
# The command modules import only argparse-level code; each handler imports JAX and the
# library it needs when it runs, so `tinylm --help` and `tinylm info --help` stay light.
COMMANDS: dict[str, str] = {
    "train": "tinylm_jax.cli.train:add_train",
    "eval": "tinylm_jax.cli.evaluate:add_eval",
    "score": "tinylm_jax.cli.evaluate:add_score",
    "sample": "tinylm_jax.cli.evaluate:add_sample",
    "plot": "tinylm_jax.cli.sweep:add_plot",
    "info": "tinylm_jax.cli.info:add_info",
    "bench": "tinylm_jax.cli.bench:add_bench",
    "tokenizer": "tinylm_jax.cli.tokenizer:add_tokenizer",
    "data": "tinylm_jax.cli.data:add_data",
    "sweep": "tinylm_jax.cli.sweep:add_sweep",
    "recipe": "tinylm_jax.cli.recipe:add_recipe",
    "export-hf": "tinylm_jax.cli.interop:add_export_hf",
    "import-hf": "tinylm_jax.cli.interop:add_import_hf",
    "inherit": "tinylm_jax.cli.inherit:add_inherit",
}


def load(target: str) -> Callable:
    """The function a "module:function" table entry names (importing its module)."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for target in COMMANDS.values():
        load(target)(commands)
    _show_defaults(parser)
    return parser


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help shows each flag's default."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:  # argparse exposes subparsers only through _actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


class _DropGinSearchNoise(logging.Filter):
    """gin logs every include-path candidate it tries and misses; only the outcome matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/gin/" not in record.pathname.replace("\\", "/")


def main(argv: Sequence[str] | None = None, train_hooks=None) -> int:
    """Runs one `tinylm` command; `train_hooks` (a `TrainHooks`) are for tests only."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropGinSearchNoise())
    for noisy in ("absl", "jax", "orbax", "grain", "etils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args, train_hooks) if args.command == "train" else args.fn(args)
    except (ConfigError, DataError, FloatingPointError) as error:
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return 2
