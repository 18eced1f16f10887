"""The `tinylm` command line: one subcommand per job (`tinylm --help` lists them)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from tinylm_jax.errors import ConfigError, DataError, StorageError

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
    "configs": "tinylm_jax.cli.configs:add_configs",
    "bench": "tinylm_jax.cli.bench:add_bench",
    "tokenizer": "tinylm_jax.cli.tokenizer:add_tokenizer",
    "data": "tinylm_jax.cli.data:add_data",
    "sweep": "tinylm_jax.cli.sweep:add_sweep",
    "recipe": "tinylm_jax.cli.recipe:add_recipe",
    "export-hf": "tinylm_jax.cli.interop:add_export_hf",
    "import-hf": "tinylm_jax.cli.interop:add_import_hf",
    "inherit": "tinylm_jax.cli.inherit:add_inherit",
    "lm-eval": "tinylm_jax.cli.lm_eval:add_lm_eval",
    "cmc": "tinylm_jax.cli.cmc:add_cmc",
}


def load(target: str) -> Callable:
    """The function a "module:function" table entry names (importing its module)."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


class _HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to a flag's help once: not when the help already names its
    default, nor for flags whose default is "unset" (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default in (None, False, [], argparse.SUPPRESS)
        if unset or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every (sub)command parser formats help with `_HelpFormatter`; subparsers are made of
    this class too (argparse's `add_subparsers` defaults `parser_class` to the parent's)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def version() -> str:
    """The installed distribution's version ("unknown" when run from a bare source tree)."""
    from importlib import metadata

    try:
        return metadata.version("tinylm_jax")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinylm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tinylm {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for target in COMMANDS.values():
        load(target)(commands)
    return parser


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
    from tinylm_jax.parallel import preemption  # light: JAX only inside its training watcher

    try:
        # SIGTERM stops any command at once (exit 143); training loops save first.
        with preemption.stop_at_once():
            if args.command == "train" or getattr(args, "accepts_train_hooks", False):
                return args.fn(args, train_hooks)
            return args.fn(args)
    except (ConfigError, DataError, StorageError, FloatingPointError) as error:
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except preemption.Terminated as stopped:
        print(f"tinylm {args.command}: {stopped}", file=sys.stderr, flush=True)
        return preemption.PREEMPTED_EXIT_CODE
