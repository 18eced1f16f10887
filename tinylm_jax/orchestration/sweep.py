"""`tinylm sweep run|report`: the spec's `strategy` picks how its arms are spent: every arm
trained once (grid.py, the default) or a step budget allocated by ER-UCB over per-arm ZOOpt
searches (budget.py). Arms and trials go to ROOT/NAME/...; reruns continue.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import ml_collections
from etils import epath

from tinylm_jax.errors import ConfigError, require_extra
from tinylm_jax.orchestration import budget, grid, runner
from tinylm_jax.orchestration import report as report_lib
from tinylm_jax.orchestration.arm import Arm


def _load(
    spec_path: str, root: str, only: Sequence[str]
) -> tuple[ml_collections.ConfigDict, list[Arm], epath.Path]:
    """The spec, its arms (only the `only` ones when given) and its root ROOT/NAME."""
    spec = grid.load_spec(spec_path)
    arms = grid.expand(spec)
    unknown = set(only) - {a.name for a in arms}
    if unknown:
        raise ConfigError(
            f"no arm named {sorted(unknown)} in {spec_path}; arms: {[a.name for a in arms]}"
        )
    if only:
        arms = [a for a in arms if a.name in only]
    return spec, arms, epath.Path(root) / spec.name


def run(
    spec_path: str,
    root: str = "runs/sweeps",
    only: Sequence[str] = (),
    dry_run: bool = False,
    parallel: int = 1,
    emit: str | None = None,
) -> int:
    """Trains the sweep (`parallel` runs at once), prints its commands (`dry_run`), or prints
    them as a SLURM array script or command list (`emit`); the exit status."""
    spec, arms, sweep_root = _load(spec_path, root, only)
    if budget.strategy(spec) == "er_ucb":
        # Checked before any trial trains: ZOOpt proposes the trials, the report draws them.
        require_extra("zoopt", "sweep", "strategy 'er_ucb' (ZOOpt search)")
        if not (dry_run or emit):
            require_extra("matplotlib", "sweep", "the sweep report")
        return _run_budgeted(spec, arms, sweep_root, dry_run, parallel, emit)
    if emit:
        print(runner.emit(grid.jobs(arms, sweep_root), emit, spec.name, sweep_root), end="")
        return 0
    codes = grid.run(arms, sweep_root, dry_run=dry_run, parallel=parallel)
    return 1 if any(codes.values()) else 0


def _run_budgeted(spec, arms: list[Arm], root, dry_run: bool, parallel: int, emit) -> int:
    plan = budget.parse_budgeted(spec)
    if dry_run:
        for command in budget.dry_run(root, spec.name, arms, plan, parallel):
            print(shlex.join(command))
        return 0
    if emit:
        state, wave = budget.emit_wave(root, spec.name, arms, plan, parallel)
        if not wave:
            print(f"budget spent ({state.spent}/{state.budget} steps): run `tinylm sweep report`")
            return 0
        jobs = [runner.job(t.workdir, [t.command(root)]) for t in wave]
        print(runner.emit(jobs, emit, spec.name, root), end="")
        return 0
    state = budget.run(root, spec.name, arms, plan, budget.local_runner(root, parallel), parallel)
    return 1 if any(t.status == "failed" for t in state.trials) else 0


def report(spec_path: str, root: str = "runs/sweeps", only: Sequence[str] = ()) -> int:
    """Writes and prints ROOT/NAME/report.md; 1 if nothing has run yet."""
    spec, arms, sweep_root = _load(spec_path, root, only)
    require_extra("matplotlib", "sweep", "the sweep report")
    if budget.strategy(spec) == "er_ucb":
        state = budget.load_state(sweep_root, spec.name, arms, budget.parse_budgeted(spec))
        budget.report(sweep_root, state)
        ran = bool(state.trials)
    else:
        ran = bool(grid.report(arms, sweep_root))
    print((sweep_root / report_lib.MARKDOWN_FILE).read_text(), end="")
    return 0 if ran else 1
