"""`tinylm recipe run/report`: a whole recipe (the PanGu-π Pro ladder) as resumable steps with
a report; the strategy lives in `tinylm_jax.orchestration.ladder`."""

from __future__ import annotations

import argparse

from tinylm_jax.cli import common
from tinylm_jax.errors import require_extra


def add_recipe(commands) -> None:
    parser = commands.add_parser(
        "recipe", help="a whole recipe (the PanGu-π Pro ladder) as resumable steps with a report"
    )
    recipe_commands = parser.add_subparsers(dest="recipe_command", required=True)
    for name, text in [
        ("run", "run the steps not done yet (a rerun continues), then write the report"),
        ("report", "evaluate the trained arms and write report.md / report.json"),
    ]:
        sub = recipe_commands.add_parser(name, help=text)
        sub.add_argument(
            "--recipe", default="pangu_ladder", choices=["pangu_ladder"], help="the recipe to run"
        )
        sub.add_argument("--root", required=True, help="every step's output goes under ROOT")
        sub.add_argument(
            "--scale", default="tiny", choices=["tiny", "1b"], help="tiny: ~45 min on 2 CPU cores"
        )
        sub.add_argument("--parent", help="a trained parent workdir instead of training one")
        sub.add_argument("--tokenizer", help="a big .model instead of training one on the corpus")
        sub.add_argument(
            "--big_vocab", type=int, help="the big tokenizer's size (default: the scale's)"
        )
        sub.add_argument(
            "--compact_vocab", type=int, help="the compressed tokenizer's size (default: scale's)"
        )
        sub.add_argument(
            "--eval_steps", type=int, default=None, help="eval batches per arm (None: all)"
        )
        sub.add_argument(
            "--arch_budget",
            choices=["equal", "reinvest"],
            help="arm C's size: equal to B's total, or near A's total spending what the compact "
            "tokenizer freed on depth (default: tiny equal, 1b reinvest as released)",
        )
        sub.add_argument(
            "--unit",
            choices=["batch", "sequence"],
            help="arm E's round unit (default batch, as PanGu's released rule)",
        )
        sub.add_argument(
            "--launcher",
            help="prefix of every step on a cluster, e.g. 'launch/tpu_pod.sh TPU ZONE --'",
        )
        if name == "run":
            sub.add_argument(
                "--dry_run", action="store_true", help="print shapes and commands only"
            )
        common.add_gin_flags(sub)
        sub.set_defaults(fn=cmd_recipe)


def cmd_recipe(args: argparse.Namespace) -> int:
    import functools
    import shlex

    from tinylm_jax.orchestration import ladder as ladder_lib

    # Planning C+ and the dry run ask for the same arms' sizes: one `tinylm info` each.
    info = functools.cache(ladder_lib.arm_info)
    ladder = ladder_lib.pangu_ladder(
        args.root,
        args.scale,
        args.gin_file,
        args.gin_param,
        args.parent,
        args.tokenizer,
        args.big_vocab,
        args.compact_vocab,
        args.arch_budget,
        args.unit,
        info=info,
    )
    launcher = shlex.split(args.launcher) if args.launcher else ()
    if not (args.recipe_command == "run" and args.dry_run):
        # Checked before any step trains: the report at the end draws the ladder's curves.
        require_extra("matplotlib", "plot", "the recipe report")
    if args.recipe_command == "run" and args.dry_run:
        ladder_lib.dry_run(ladder, launcher, info)
        return 0
    if args.recipe_command == "run":
        code = ladder_lib.run(ladder, launcher)
        if code:
            return code
    print(ladder_lib.report(ladder, args.eval_steps), end="")
    return 0
