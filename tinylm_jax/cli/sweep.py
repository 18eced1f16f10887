"""`tinylm sweep run/report` (ablation sweeps from an ml_collections spec) and `tinylm plot`
(training curves of several runs); the strategy lives in `tinylm_jax.orchestration`."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinylm_jax.errors import ConfigError


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
        sub.add_argument("--spec", required=True, help="Python file with get_config()")
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
    from tinylm_jax.orchestration import budget as sweep_budget
    from tinylm_jax.orchestration import grid as sweep

    spec = sweep.load_spec(args.spec)
    arms = sweep.expand(spec)
    if args.arm:
        unknown = set(args.arm) - {a.name for a in arms}
        if unknown:
            raise ConfigError(f"no arm named {sorted(unknown)}; arms: {[a.name for a in arms]}")
        arms = [a for a in arms if a.name in args.arm]
    root = Path(args.root) / spec.name
    if sweep_budget.strategy(spec) == "er_ucb":
        return _budgeted_sweep(args, spec, arms, root)
    if args.sweep_command == "run" and args.emit:
        if any(arm.parent for arm in arms):
            raise ConfigError(
                "--emit writes one job per arm and cannot order an arm's `tinylm inherit` "
                "before its training: run the inherit commands `--dry_run` prints first"
            )
        commands = [arm.command(root / arm.name) for arm in arms]
        print(sweep.emit_script(commands, args.emit, spec.name, root), end="")
        return 0
    if args.sweep_command == "run":
        codes = sweep.run(arms, root, dry_run=args.dry_run, parallel=args.parallel)
        return 1 if any(codes.values()) else 0
    root.mkdir(parents=True, exist_ok=True)
    rows = sweep.report(arms, root)
    print((root / "report.md").read_text(), end="")
    return 0 if rows else 1


def _budgeted_sweep(args: argparse.Namespace, spec, arms, root: Path) -> int:
    import shlex

    from tinylm_jax.orchestration import budget as sweep_budget
    from tinylm_jax.orchestration import grid as sweep

    plan = sweep_budget.parse_budgeted(spec)
    if args.sweep_command == "report":
        state = sweep_budget.load_state(root, spec.name, arms, plan)
        sweep_budget.report(root, state)
        print((root / "report.md").read_text(), end="")
        return 0 if state.trials else 1
    if args.dry_run:
        for command in sweep_budget.dry_run(root, spec.name, arms, plan, args.parallel):
            print(shlex.join(command))
        return 0
    if args.emit:
        state, wave = sweep_budget.emit_wave(root, spec.name, arms, plan, args.parallel)
        if not wave:
            print(f"budget spent ({state.spent}/{state.budget} steps): run `tinylm sweep report`")
            return 0
        commands = [t.command(root) for t in wave]
        print(sweep.emit_script(commands, args.emit, spec.name, root), end="")
        return 0
    runner = sweep_budget.local_runner(root, args.parallel)
    state = sweep_budget.run(root, spec.name, arms, plan, runner, args.parallel)
    return 1 if any(t.status == "failed" for t in state.trials) else 0
