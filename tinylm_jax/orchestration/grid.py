"""Grid sweeps: an ml_collections spec expands into arms, each a list of gin overrides.

A spec is a Python file whose `get_config()` returns a ConfigDict:

    name:       the sweep's name (a folder under the sweep root)
    gin_files:  gin files every arm starts from
    params:     {Configurable: {field: value}} bound in every arm
    arms:       optional list of {name, params: {Configurable: {field: value}}}: hand-made
                points (e.g. depth/width pairs at a fixed parameter budget)
    grid:       optional {Configurable: {field: [values]}}: crossed with the arms (and with
                each other) as a full grid
    inherit_from: optional parent workdir: each arm first runs `tinylm inherit --parent=...`
                with its gin overrides (once: skipped when the arm's workdir has its report)

Specs ship in `configs/sweeps/` and are named like gin files (`--spec=sweeps/X.py`). Every
arm trains in ROOT/NAME/ARM (arm.py), `parallel` at a time, or as one task of a SLURM job
array (runner.py). A spec with `strategy = 'er_ucb'` spends a step budget over the arms
instead (budget.py).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import ml_collections
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.gin import CONFIGS_DIR
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import report as report_lib
from tinylm_jax.orchestration import runner
from tinylm_jax.orchestration.arm import Arm

REPORT_FIELDS = ("step", "loss", "eval_loss", "eval_bits_per_byte", "tokens_per_second", "mfu")
# Where specs lived before they moved to configs/sweeps/ (still accepted).
OLD_SPEC_DIR = "launch/sweeps/"


def resolve_spec(path: str | Path) -> Path:
    """The spec file `path` names: as given, then under the package's configs/ (as gin
    files are found); an old `launch/sweeps/X.py` finds `configs/sweeps/X.py`."""
    given = Path(path)
    if given.is_file():
        return given
    name = given.as_posix()
    if name.startswith(OLD_SPEC_DIR):
        new = "sweeps/" + name[len(OLD_SPEC_DIR) :]
        if not (CONFIGS_DIR / new).is_file():
            raise ConfigError(
                f"sweep spec {name} not found: specs moved to configs/sweeps/, and {new} is not "
                f"there either (looked in {CONFIGS_DIR / 'sweeps'}); pass --spec=sweeps/NAME.py"
            )
        logging.warning("--spec=%s: specs moved to configs/sweeps/; pass --spec=%s", name, new)
        name = new
    if (CONFIGS_DIR / name).is_file():
        return CONFIGS_DIR / name
    raise ConfigError(
        f"sweep spec {name} not found (looked in {Path.cwd()} and {CONFIGS_DIR}); pass a "
        "Python file with get_config(), e.g. --spec=sweeps/pangu_depth_width.py"
    )


def load_spec(path: str | Path) -> ml_collections.ConfigDict:
    path = resolve_spec(path)
    module_spec = importlib.util.spec_from_file_location(f"tinylm_sweep_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"sweep spec {path} cannot be imported; give a Python (.py) file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"sweep spec {path} defines no get_config(); add one")
    return module.get_config()


def _bindings(tree) -> list[tuple[str, object]]:
    """{Configurable: {field: value}} -> [('Configurable.field', value)], in a stable order."""
    if tree is None:
        return []
    tree = tree.to_dict() if isinstance(tree, ml_collections.ConfigDict) else dict(tree)
    out: list[tuple[str, object]] = []
    for configurable, fields in sorted(tree.items()):
        if not isinstance(fields, dict):
            raise ConfigError(
                f"sweep spec: {configurable!r} must map field names to values, got {fields!r}"
            )
        out.extend((f"{configurable}.{field}", value) for field, value in sorted(fields.items()))
    return out


def gin_value(value: object) -> str:
    """A value as gin text (lists as tuples, which gin parses into frozen dataclasses)."""
    if isinstance(value, list):
        value = tuple(value)
    return repr(value)


def _short(binding: str, value: object) -> str:
    return f"{binding.split('.')[-1]}-{value}".replace("/", "_").replace(" ", "")


def expand(spec: ml_collections.ConfigDict) -> list[Arm]:
    """All arms of the sweep: hand-made arms (or one base arm) crossed with the grid."""
    fixed = [f"{b} = {gin_value(v)}" for b, v in _bindings(spec.get("params"))]
    grid: list[tuple[str, Sequence[object]]] = []
    for binding, values in _bindings(spec.get("grid")):
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"sweep spec: grid entry {binding} needs a non-empty list of values")
        grid.append((binding, values))
    base_arms = list(spec.get("arms") or []) or [{"name": "", "params": {}}]
    arms, names = [], set()
    for base in base_arms:
        base = base.to_dict() if isinstance(base, ml_collections.ConfigDict) else dict(base)
        base_params = [f"{b} = {gin_value(v)}" for b, v in _bindings(base.get("params"))]
        for point in itertools.product(*(values for _, values in grid)):
            grid_point = [(b, v) for (b, _), v in zip(grid, point, strict=True)]
            name = "_".join([base.get("name", "")] + [_short(b, v) for b, v in grid_point])
            name = name.strip("_") or "base"
            if name in names:
                raise ConfigError(f"sweep spec: two arms are both named {name!r}")
            names.add(name)
            params = fixed + base_params + [f"{b} = {gin_value(v)}" for b, v in grid_point]
            files = tuple(spec.get("gin_files") or ())
            arm = Arm(name, files, tuple(params), spec.get("inherit_from"), spec.get("name"))
            arms.append(arm)
    return arms


def jobs(arms: Iterable[Arm], root: epath.PathLike) -> list[runner.Job]:
    """Each arm's commands still to run (inheritance once, then training) in ROOT/ARM."""
    root = epath.Path(root)
    return [runner.job(arm.name, arm.commands(root / arm.name)) for arm in arms]


def run(
    arms: Iterable[Arm], root: epath.PathLike, dry_run: bool = False, parallel: int = 1
) -> dict[str, int]:
    """Trains the arms, `parallel` at a time (each resumes if already started); prints the
    commands first; {arm: exit status} ({} for a dry run)."""
    todo = jobs(arms, root)
    for job in todo:
        for command in job.commands:
            print(shlex.join(command), flush=True)
    return {} if dry_run else runner.run(todo, parallel)


def summarize(workdir: epath.PathLike) -> dict[str, float | str]:
    """Final training and eval metrics of one arm, from its metrics log."""
    row: dict[str, float | str] = {"arm": epath.Path(workdir).name}
    records = layout.read_metrics(workdir)
    if not records:
        return {**row, "status": "not started"}
    for record in records:
        row.update({k: record[k] for k in REPORT_FIELDS if k in record})
    return {**row, "status": "ok"}


def report(arms: Iterable[Arm], root: epath.PathLike) -> list[dict]:
    """One row per arm; written to ROOT/report.json and ROOT/report.md, with the started
    arms' curves (curves.png) and final bits per byte (best.png)."""
    from tinylm_jax.orchestration import plot

    root = epath.Path(root)
    rows = [summarize(root / arm.name) for arm in arms]
    columns = ["arm", "status", *REPORT_FIELDS]
    lines = report_lib.table(columns, [[row.get(c) for c in columns] for row in rows])
    # summarize() puts the arm's name (a str) under "arm" and its logged metrics (floats).
    named_rows = [(cast(str, row["arm"]), row) for row in rows]
    started = {arm: root / arm for arm, row in named_rows if row["status"] == "ok"}
    if started:
        figure = plot.curves_figure(started)
        lines += report_lib.figure(
            root, "curves.png", figure, "training curves of every started arm"
        )
    best = {
        arm: cast(float, row["eval_bits_per_byte"])
        for arm, row in named_rows
        if "eval_bits_per_byte" in row
    }
    if best:
        figure = plot.best_figure(best, "final held-out bits per byte")
        lines += report_lib.figure(
            root, "best.png", figure, "final held-out bits per byte of every arm"
        )
    report_lib.write(root, rows, lines)
    return rows
