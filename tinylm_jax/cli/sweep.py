"""`tinylm sweep run/report` (ablation sweeps from an ml_collections spec) and `tinylm plot`
(training curves of several runs); the strategy lives in `tinylm_jax.orchestration`."""

from __future__ import annotations

import argparse

from tinylm_jax.errors import ConfigError, require_extra


def add_plot(commands) -> None:
    parser = commands.add_parser(
        "plot", help="train loss and held-out bits per byte against tokens, one line per run"
    )
    parser.add_argument("--workdir", action="append", required=True, help="repeatable")
    parser.add_argument(
        "--label", action="append", default=[], help="legend entry per workdir (default: path)"
    )
    parser.add_argument("--out", required=True, help="PNG file to write (local or gs://)")
    parser.set_defaults(fn=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    require_extra("matplotlib", "plot", "tinylm plot")
    from tinylm_jax.orchestration import plot

    labels = args.label or args.workdir
    if len(labels) != len(args.workdir):
        raise ConfigError(
            f"got {len(args.label)} --label for {len(args.workdir)} --workdir; give one per "
            "workdir or none"
        )
    runs = dict(zip(labels, args.workdir, strict=True))
    print(plot.save(plot.curves_figure(runs), args.out))
    return 0


def add_sweep(commands) -> None:
    parser = commands.add_parser("sweep", help="ablation sweeps from an ml_collections spec")
    sweep_commands = parser.add_subparsers(dest="sweep_command", required=True)
    for name, text in [
        ("run", "train every arm (resuming started ones)"),
        ("report", "final metrics of every arm as a table"),
    ]:
        sub = sweep_commands.add_parser(name, help=text)
        sub.add_argument(
            "--spec",
            required=True,
            help="Python file with get_config(); looked up as given, then in configs/ "
            "(sweeps/NAME.py)",
        )
        sub.add_argument("--root", default="runs/sweeps", help="arms go to ROOT/NAME/ARM")
        sub.add_argument("--arm", action="append", default=[], help="only these arms")
        if name == "run":
            sub.add_argument("--dry_run", action="store_true", help="print the commands only")
            sub.add_argument(
                "--parallel", type=int, default=1, help="runs (trials) trained at once"
            )
            sub.add_argument(
                "--emit",
                choices=["slurm", "commands"],
                help="print the next runs as a SLURM job array script or a command list "
                "instead of training (er_ucb: one wave of --parallel trials per call)",
            )
        sub.set_defaults(fn=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from tinylm_jax.orchestration import sweep

    if args.sweep_command == "run":
        return sweep.run(args.spec, args.root, args.arm, args.dry_run, args.parallel, args.emit)
    return sweep.report(args.spec, args.root, args.arm)
