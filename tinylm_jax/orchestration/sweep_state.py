"""A budgeted sweep's state, `ROOT/NAME/sweep_state.json`: its trials (overrides, results,
steps) and the order of every ask and tell of the arms' searchers, saved after every trial.

Replaying the asks and tells rebuilds every searcher exactly, so a killed sweep continues
where it stopped and a finished one continues when its budget is raised.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from etils import epath

from tinylm_jax.errors import ConfigError
from tinylm_jax.files import write_atomically
from tinylm_jax.orchestration import search as sweep_search
from tinylm_jax.orchestration.arm import Arm

STATE_FILE = "sweep_state.json"
# What SRacos is told for a trial that failed (e.g. diverged): worse than any real result.
FAILED_VALUE = 1e9


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of one arm's search, trained for `steps` steps in ROOT/NAME/`workdir`.

    `status` is 'running' (started, no result yet), 'done' or 'failed'.
    """

    id: int
    arm: str
    workdir: str
    point: tuple[float, ...]
    values: dict
    gin_files: tuple[str, ...]
    gin_params: tuple[str, ...]
    steps: int
    status: str = "running"
    bits_per_byte: float | None = None

    def command(self, root: epath.PathLike) -> list[str]:
        """`tinylm train` in ROOT/WORKDIR: the arm's gin plus the trial's steps and point."""
        # ROOT is the sweep's directory, named after it: the trials' group.
        arm = Arm(self.workdir, self.gin_files, self.gin_params, group=epath.Path(root).name)
        return arm.command(epath.Path(root) / self.workdir)

    def result(self) -> float:
        """The bits per byte of a done trial (`finish` records one for every done trial)."""
        if self.bits_per_byte is None:
            raise ConfigError(
                f"{STATE_FILE}: trial {self.id} of arm {self.arm} is {self.status!r} but has no "
                "bits_per_byte"
            )
        return self.bits_per_byte


@dataclasses.dataclass(frozen=True)
class SweepState:
    """Everything a rerun needs: trials, the searchers' ask/tell order, the budget spent.

    `events` are ('ask', trial id), ('tell', trial id) or ('exhausted', arm name): an ask
    that found no new point in the arm's space (the arm is then left out). `search_trials`
    sized the searchers when the sweep started (a rerun may raise `budget`, not this).
    """

    name: str
    arms: tuple[str, ...]
    budget: int
    rung_steps: int
    search: tuple[str, ...]
    seed: int
    search_trials: int
    trials: tuple[Trial, ...] = ()
    events: tuple[tuple[str, int | str], ...] = ()

    @property
    def spent(self) -> int:
        """Steps of the finished (done or failed) trials."""
        return sum(t.steps for t in self.trials if t.status != "running")

    @property
    def committed(self) -> int:
        """Steps of every trial started, finished or not."""
        return sum(t.steps for t in self.trials)

    @property
    def exhausted(self) -> frozenset[str]:
        return frozenset(_arm_ref(ref) for kind, ref in self.events if kind == "exhausted")

    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.status == "done"]
        return min(done, key=Trial.result) if done else None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SweepState:
        raw = json.loads(text)
        trials = []
        for t in raw.pop("trials"):
            tuples = {k: tuple(t[k]) for k in ("point", "gin_files", "gin_params")}
            trials.append(Trial(**{**t, **tuples}))
        events = tuple((kind, ref) for kind, ref in raw.pop("events"))
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fields, trials=tuple(trials), events=events)


def save_state(root: epath.PathLike, state: SweepState) -> None:
    epath.Path(root).mkdir(parents=True, exist_ok=True)
    write_atomically(epath.Path(root) / STATE_FILE, state.to_json())


def told_value(trial: Trial) -> float:
    return trial.result() if trial.status == "done" else FAILED_VALUE


def _arm_ref(ref: int | str) -> str:
    """The arm an 'exhausted' event names."""
    if not isinstance(ref, str):
        raise ConfigError(f"{STATE_FILE}: an 'exhausted' event names arm {ref!r}, not an arm name")
    return ref


def _trial_ref(kind: str, ref: int | str) -> int:
    """The trial id an 'ask' or 'tell' event names."""
    if not isinstance(ref, int):
        raise ConfigError(f"{STATE_FILE}: an {kind!r} event names trial {ref!r}, not a trial id")
    return ref


def rebuild_searchers(state: SweepState, dims: int) -> dict[str, sweep_search.Searcher]:
    """Every arm's searcher as it stood after the state's asks and tells (replayed in order)."""
    searchers = {
        arm: sweep_search.Searcher(dims, state.search_trials, state.seed + i)
        for i, arm in enumerate(state.arms)
    }
    trials = {t.id: t for t in state.trials}
    for kind, ref in state.events:
        if kind == "exhausted":
            arm = _arm_ref(ref)
            if searchers[arm].ask() is not None:
                raise ConfigError(f"{STATE_FILE}: arm {arm}'s search no longer replays")
            continue
        trial = trials[_trial_ref(kind, ref)]
        if kind == "ask":
            point = searchers[trial.arm].ask()
            if point is None or not all(
                math.isclose(a, b, abs_tol=sweep_search.PRECISION)
                for a, b in zip(point, trial.point, strict=True)
            ):
                raise ConfigError(
                    f"{STATE_FILE}: trial {trial.id} of arm {trial.arm} does not replay (another "
                    "zoopt version?); continue with that version or start a new --root"
                )
        else:
            searchers[trial.arm].tell(trial.point, told_value(trial))
    return searchers


def finish(
    state: SweepState,
    searchers: dict[str, sweep_search.Searcher],
    trial_id: int,
    bits_per_byte: float | None,
) -> SweepState:
    """Records a trial's result (None: it failed) and tells its arm's searcher."""
    trial = state.trials[trial_id]
    ok = bits_per_byte is not None and math.isfinite(bits_per_byte)
    trial = dataclasses.replace(
        trial, status="done" if ok else "failed", bits_per_byte=bits_per_byte if ok else None
    )
    searchers[trial.arm].tell(trial.point, told_value(trial))
    trials = state.trials[:trial_id] + (trial,) + state.trials[trial_id + 1 :]
    return dataclasses.replace(state, trials=trials, events=state.events + (("tell", trial.id),))
