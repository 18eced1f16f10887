"""Budgeted sweeps (`strategy = 'er_ucb'`): ER-UCB spends a budget of training steps over the
spec's arms, each arm searching its own hyper-parameters with ZOOpt.

Spec fields beyond grid.py's:

    strategy:   'er_ucb' ('grid', the default, trains every arm once; see grid.py)
    budget:     training steps for the whole sweep, all arms and trials together
    rung_steps: the unit of allocation: every trial is `tinylm train` for this many steps
                (TrainConfig.num_steps) in its own workdir ROOT/NAME/ARM/tNNN, so a trial cut
                short resumes from its checkpoint
    search:     {Configurable: {field: range}} searched per arm (see search.py)
    seed:       seeds the arms' searches (default 0); training seeds stay the gin ones
    er_ucb:     optional {beta, theta, gamma, init_pulls} (see bandit.py)

Each pull of an arm asks its searcher for a point, trains one trial there and feeds back the
trial's final held-out bits per byte (lower is better; the bandit's reward is its negative).
`ROOT/NAME/sweep_state.json` is rewritten after every trial: the trials, their overrides,
results and the budget spent, plus the order of every ask and tell, from which the searchers
are rebuilt exactly on a rerun, so a killed sweep continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Sequence

import ml_collections
from etils import epath

from tinylm_jax import layout
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import bandit as sweep_bandit
from tinylm_jax.orchestration import report as report_lib
from tinylm_jax.orchestration import runner as runner_lib
from tinylm_jax.orchestration import search as sweep_search
from tinylm_jax.orchestration.arm import Arm
from tinylm_jax.orchestration.grid import gin_value
from tinylm_jax.orchestration.sweep_state import (
    STATE_FILE,
    SweepState,
    Trial,
    finish,
    rebuild_searchers,
    save_state,
)


@dataclasses.dataclass(frozen=True)
class Budgeted:
    """The budget part of a spec."""

    budget: int
    rung_steps: int
    search: tuple[sweep_search.SearchDim, ...]
    seed: int = 0
    er_ucb: sweep_bandit.ErUcbConfig = sweep_bandit.ErUcbConfig()

    @property
    def max_trials(self) -> int:
        return self.budget // self.rung_steps


def strategy(spec: ml_collections.ConfigDict) -> str:
    name = spec.get("strategy") or "grid"
    if name not in ("grid", "er_ucb"):
        raise ConfigError(f"sweep spec: strategy must be 'grid' or 'er_ucb', got {name!r}")
    return name


def parse_budgeted(spec: ml_collections.ConfigDict) -> Budgeted:
    """The spec's budget, rung, search space and bandit settings, checked."""
    budget, rung = spec.get("budget"), spec.get("rung_steps")
    if not isinstance(budget, int) or not isinstance(rung, int) or not 0 < rung <= budget:
        raise ConfigError(
            f"sweep spec: strategy 'er_ucb' needs integers 0 < rung_steps <= budget (training "
            f"steps); got budget={budget!r}, rung_steps={rung!r}"
        )
    search_tree = spec.get("search")
    if isinstance(search_tree, ml_collections.ConfigDict):
        search_tree = search_tree.to_dict()
    search = sweep_search.parse_search(search_tree)
    if not search:
        raise ConfigError(
            "sweep spec: strategy 'er_ucb' needs a `search` space (trials of one arm would "
            "otherwise all be the same run)"
        )
    er_ucb = spec.get("er_ucb")
    er_ucb = er_ucb.to_dict() if isinstance(er_ucb, ml_collections.ConfigDict) else er_ucb
    try:
        bandit = sweep_bandit.ErUcbConfig(**(er_ucb or {}))
    except TypeError as error:
        raise ConfigError(
            f"sweep spec: er_ucb takes beta, theta, gamma and init_pulls: {error}"
        ) from None
    return Budgeted(budget, rung, search, int(spec.get("seed") or 0), bandit)


def new_state(name: str, arms: Sequence[Arm], plan: Budgeted) -> SweepState:
    return SweepState(
        name=name,
        arms=tuple(a.name for a in arms),
        budget=plan.budget,
        rung_steps=plan.rung_steps,
        search=tuple(d.binding for d in plan.search),
        seed=plan.seed,
        search_trials=plan.max_trials,
    )


def load_state(root: epath.PathLike, name: str, arms: Sequence[Arm], plan: Budgeted) -> SweepState:
    """ROOT/sweep_state.json if a sweep was started there (it must be this spec's), else a new
    state. The budget may be raised on a rerun to continue a finished sweep."""
    path = epath.Path(root) / STATE_FILE
    fresh = new_state(name, arms, plan)
    if not path.exists():
        return fresh
    state = SweepState.from_json(path.read_text())
    mine = (fresh.name, fresh.arms, fresh.rung_steps, fresh.search, fresh.seed)
    theirs = (state.name, state.arms, state.rung_steps, state.search, state.seed)
    if mine != theirs:
        raise ConfigError(
            f"{path} belongs to another sweep (name, arms, rung_steps, search, seed "
            f"{theirs} vs this spec's {mine}); use another --root or remove it"
        )
    if plan.budget < state.committed:
        raise ConfigError(f"budget {plan.budget} is below the {state.committed} steps {path} spent")
    return dataclasses.replace(state, budget=plan.budget)


def plan_wave(
    state: SweepState,
    searchers: dict[str, sweep_search.Searcher],
    arms: Sequence[Arm],
    plan: Budgeted,
    width: int,
) -> tuple[SweepState, list[Trial]]:
    """Starts up to `width` new trials that fit the budget left, each on the arm with the
    highest ER-UCB index (trials not finished count as pulls, not as rewards)."""
    by_name = {a.name: a for a in arms}
    new: list[Trial] = []
    while len(new) < width and state.committed + plan.rung_steps <= state.budget:
        rewards = [
            [-t.result() for t in state.trials if t.arm == arm and t.status == "done"]
            for arm in state.arms
        ]
        # A failed trial rewards like the worst result seen, so a diverging arm loses ground.
        worst = min((r for arm in rewards for r in arm), default=0.0)
        for i, arm in enumerate(state.arms):
            failed = sum(1 for t in state.trials if t.arm == arm and t.status == "failed")
            rewards[i] += [worst] * failed
        pulls = [sum(1 for t in state.trials if t.arm == arm) for arm in state.arms]
        exhausted = state.exhausted
        allowed = [arm not in exhausted and searchers[arm].can_ask for arm in state.arms]
        choice = sweep_bandit.choose(rewards, pulls, allowed, plan.er_ucb)
        if choice is None:
            break
        chosen = by_name[state.arms[choice]]
        point = searchers[chosen.name].ask()
        if point is None:
            state = dataclasses.replace(state, events=state.events + (("exhausted", chosen.name),))
            continue
        trial = _make_trial(state, chosen, point, plan)
        state = dataclasses.replace(
            state, trials=state.trials + (trial,), events=state.events + (("ask", trial.id),)
        )
        new.append(trial)
    return state, new


def _make_trial(state: SweepState, arm: Arm, point: tuple[float, ...], plan: Budgeted) -> Trial:
    values = sweep_search.values(plan.search, point)
    index = sum(1 for t in state.trials if t.arm == arm.name)
    overrides = [f"TrainConfig.num_steps = {plan.rung_steps}"]
    overrides += [f"{binding} = {gin_value(v)}" for binding, v in values.items()]
    return Trial(
        id=len(state.trials),
        arm=arm.name,
        workdir=f"{arm.name}/t{index:03d}",
        point=point,
        values=values,
        gin_files=arm.gin_files,
        gin_params=arm.gin_params + tuple(overrides),
        steps=plan.rung_steps,
    )


def progress_line(state: SweepState, trial: Trial) -> str:
    best = state.best()
    result = "failed" if trial.bits_per_byte is None else f"{trial.bits_per_byte:.4f} bits/byte"
    values = _values_text(trial.values)
    best_text = f"{best.bits_per_byte:.4f} ({best.workdir})" if best else "none"
    return (
        f"trial {trial.id} | arm {trial.arm} ({values}) | {result} | "
        f"budget {state.spent}/{state.budget} steps | best {best_text}"
    )


def _values_text(values: dict) -> str:
    """'learning_rate=0.003, warmup_steps=0.05': searched fields by their short names."""
    return ", ".join(
        f"{b.split('.')[-1]}={f'{v:.4g}' if isinstance(v, float) else v}" for b, v in values.items()
    )


# A runner trains a wave of trials and returns each one's final held-out bits per byte
# (None: failed). Tests inject their own; `local_runner` runs `tinylm train` subprocesses.
Runner = Callable[[Sequence[Trial]], list[float | None]]


def final_bits_per_byte(workdir: epath.PathLike, steps: int) -> float | None:
    """The held-out bits per byte that `tinylm train` logged at its last step, if it did."""
    return layout.last_values(layout.read_metrics(workdir), "eval_bits_per_byte").get(steps)


def local_runner(root: epath.PathLike, parallel: int = 1) -> Runner:
    """Trains each trial as a `tinylm train` subprocess, `parallel` at a time (the process
    environment passes through); output goes to the trial's train.log."""
    root = epath.Path(root)

    def runner(trials: Sequence[Trial]) -> list[float | None]:
        jobs = [
            runner_lib.job(t.workdir, [t.command(root)], root / t.workdir / "train.log")
            for t in trials
        ]
        codes = runner_lib.run(jobs, parallel)
        return [
            None if codes[t.workdir] else final_bits_per_byte(root / t.workdir, t.steps)
            for t in trials
        ]

    return runner


def run(
    root: epath.PathLike,
    name: str,
    arms: Sequence[Arm],
    plan: Budgeted,
    runner: Runner,
    width: int = 1,
    log: Callable[[str], None] = print,
) -> SweepState:
    """Spends the budget: waves of `width` trials, state saved after every trial. Trials a
    killed run left unfinished are trained again first (they resume from their checkpoints)."""
    root = epath.Path(root)
    state = load_state(root, name, arms, plan)
    searchers = rebuild_searchers(state, len(plan.search))
    while True:
        wave = [t for t in state.trials if t.status == "running"]
        if not wave:
            state, wave = plan_wave(state, searchers, arms, plan, width)
            if not wave:
                break
            save_state(root, state)  # the wave's trials exist before any of them trains
        for trial in wave:
            log(f"trial {trial.id} | arm {trial.arm} | {shlex.join(trial.command(root))}")
        for trial, result in zip(wave, runner(wave), strict=True):
            state = finish(state, searchers, trial.id, result)
            save_state(root, state)
            log(progress_line(state, state.trials[trial.id]))
    return state


def dry_run(
    root: epath.PathLike, name: str, arms: Sequence[Arm], plan: Budgeted, width: int
) -> list[list[str]]:
    """The commands of the trials a run would start next (nothing is written)."""
    root = epath.Path(root)
    state = load_state(root, name, arms, plan)
    running = [t for t in state.trials if t.status == "running"]
    if not running:
        _, running = plan_wave(state, rebuild_searchers(state, len(plan.search)), arms, plan, width)
    return [t.command(root) for t in running]


def emit_wave(
    root: epath.PathLike, name: str, arms: Sequence[Arm], plan: Budgeted, width: int
) -> tuple[SweepState, list[Trial]]:
    """One step of a sweep run elsewhere (a SLURM array, a list of commands): records the
    results the previous wave's workdirs hold, then starts the next wave (or hands back the
    previous wave's unfinished trials, to be run again: they resume). Saves the state."""
    root = epath.Path(root)
    state = load_state(root, name, arms, plan)
    searchers = rebuild_searchers(state, len(plan.search))
    for trial in [t for t in state.trials if t.status == "running"]:
        result = final_bits_per_byte(root / trial.workdir, trial.steps)
        if result is not None:
            state = finish(state, searchers, trial.id, result)
    wave = [t for t in state.trials if t.status == "running"]
    if not wave:
        state, wave = plan_wave(state, searchers, arms, plan, width)
    save_state(root, state)
    return state, wave


def _arm_rows(state: SweepState) -> list[dict]:
    rows = []
    for arm in state.arms:
        trials = [t for t in state.trials if t.arm == arm]
        done = [t for t in trials if t.status == "done"]
        best = min(done, key=Trial.result) if done else None
        rows.append(
            {
                "arm": arm,
                "trials": len(trials),
                "steps": sum(t.steps for t in trials if t.status != "running"),
                "best_bits_per_byte": best.bits_per_byte if best else None,
                "best_trial": best.workdir if best else None,
                "best_values": best.values if best else None,
            }
        )
    return rows


def _figures(root: epath.Path, state: SweepState, arms: list[dict]) -> list[str]:
    from tinylm_jax.orchestration import plot

    lines = []
    started = {
        t.workdir: root / t.workdir for t in state.trials if layout.is_trained(root / t.workdir)
    }
    if started:
        figure = plot.curves_figure(started)
        lines += report_lib.figure(
            root, "curves.png", figure, "loss and held-out bits per byte of every trial"
        )
    best = {r["arm"]: r["best_bits_per_byte"] for r in arms if r["best_bits_per_byte"]}
    if best:
        figure = plot.best_figure(best)
        lines += report_lib.figure(
            root, "best.png", figure, "best held-out bits per byte of every arm"
        )
    if state.trials:
        figure = plot.budget_figure([(t.arm, t.steps) for t in state.trials], state.arms)
        alt = "training steps each arm received as the budget was spent"
        lines += report_lib.figure(root, "budget.png", figure, alt)
    return lines


def report(root: epath.PathLike, state: SweepState) -> dict:
    """Writes ROOT/report.json, ROOT/report.md and its figures: curves.png (every trial),
    best.png (best result per arm), budget.png (steps each arm received over the sweep)."""
    root = epath.Path(root)
    arms, best = _arm_rows(state), state.best()
    summary = {
        "name": state.name,
        "strategy": "er_ucb",
        "budget": state.budget,
        "spent": state.spent,
        "best": dataclasses.asdict(best) if best else None,
        "arms": arms,
        "trials": [dataclasses.asdict(t) for t in state.trials],
    }
    best_text = f"{best.bits_per_byte:.4f} bits/byte, {best.workdir}" if best else "none yet"
    lines = [
        f"# Sweep {state.name} (ER-UCB + ZOOpt)",
        "",
        f"Budget {state.spent}/{state.budget} training steps in {len(state.trials)} trials of "
        f"{state.rung_steps} steps. Best: {best_text}",
        "",
    ]
    columns = ["arm", "trials", "steps", "best bits/byte", "best trial", "best values"]
    lines += report_lib.table(
        columns,
        [
            [
                r["arm"],
                r["trials"],
                r["steps"],
                _bits(r["best_bits_per_byte"]),
                r["best_trial"],
                _values_text(r["best_values"] or {}),
            ]
            for r in arms
        ],
    )
    lines.append("")
    lines += report_lib.table(
        ["trial", "arm", "status", "bits/byte", "values"],
        [
            [t.workdir, t.arm, t.status, _bits(t.bits_per_byte), _values_text(t.values)]
            for t in state.trials
        ],
    )
    report_lib.write(root, summary, lines + _figures(root, state, arms))
    return summary


def _bits(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
