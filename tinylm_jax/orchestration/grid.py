"""Ablation sweeps: an ml_collections spec expands into runs, each a list of gin overrides.

A spec is a Python file whose `get_config()` returns a ConfigDict:

    name:       the sweep's name (a folder under the sweep root)
    gin_files:  gin files every arm starts from
    params:     {Configurable: {field: value}} bound in every arm
    arms:       optional list of {name, params: {Configurable: {field: value}}}: hand-made
                points (e.g. depth/width pairs at a fixed parameter budget)
    grid:       optional {Configurable: {field: [values]}}: crossed with the arms (and with
                each other) as a full grid
    inherit_from: optional parent workdir: each arm first runs `tinylm inherit --parent=...`
                with its gin overrides (once: skipped when the arm has `inheritance.json`)

Every arm is `tinylm train --workdir=ROOT/NAME/ARM --gin_file=... --gin_param=...`, so an arm
can be rerun or resumed by hand with the command `tinylm sweep run --dry_run` prints, run
`parallel` at a time, or written out as a SLURM job array (`emit_script`). A spec with
`strategy = 'er_ucb'` spends a step budget over the arms instead (sweep_budget.py).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import ml_collections

from tinylm_jax import layout
from tinylm_jax.errors import ConfigError

REPORT_FIELDS = ("step", "loss", "eval_loss", "eval_bits_per_byte", "tokens_per_second", "mfu")


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    gin_files: tuple[str, ...]
    gin_params: tuple[str, ...]
    parent: str | None = None

    def command(self, workdir: Path, subcommand: str = "train") -> list[str]:
        parent = [f"--parent={self.parent}"] if subcommand == "inherit" else []
        return [
            sys.executable,
            "-m",
            "tinylm_jax.cli",
            subcommand,
            *parent,
            f"--workdir={workdir}",
            *(f"--gin_file={f}" for f in self.gin_files),
            *(f"--gin_param={p}" for p in self.gin_params),
        ]

    def commands(self, workdir: Path) -> list[list[str]]:
        """The arm's commands still to run: inheritance (once), then training."""
        train = [self.command(workdir)]
        if self.parent is None or layout.inheritance_file(workdir).exists():
            return train
        return [self.command(workdir, "inherit"), *train]


def load_spec(path: str | Path) -> ml_collections.ConfigDict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec {path} not found; pass a Python file with get_config()")
    module_spec = importlib.util.spec_from_file_location(f"tinylm_sweep_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"sweep spec {path} defines no get_config()")
    return module.get_config()


def _bindings(tree) -> list[tuple[str, object]]:
    """{Configurable: {field: value}} -> [('Configurable.field', value)], in a stable order."""
    if tree is None:
        return []
    tree = tree.to_dict() if isinstance(tree, ml_collections.ConfigDict) else dict(tree)
    out = []
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
    grid = _bindings(spec.get("grid"))
    for binding, values in grid:
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"sweep spec: grid entry {binding} needs a non-empty list of values")
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
            arms.append(Arm(name, files, tuple(params), spec.get("inherit_from")))
    return arms


def run(
    arms: Iterable[Arm], root: Path, dry_run: bool = False, parallel: int = 1
) -> dict[str, int]:
    """Runs arms, `parallel` at a time (each resumes if already started); returns exit codes."""
    arms = list(arms)
    for arm in arms:
        for command in arm.commands(root / arm.name):
            print(shlex.join(command), flush=True)
    if dry_run:
        return {}

    def train(arm: Arm) -> int:
        for command in arm.commands(root / arm.name):  # inheritance (once), then training
            code = subprocess.run(command, check=False).returncode
            if code:
                print(f"arm {arm.name} failed with exit code {code}", flush=True)
                return code
        return 0

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        return dict(zip((a.name for a in arms), pool.map(train, arms), strict=True))


def emit_script(commands: Iterable[Sequence[str]], kind: str, name: str, root: Path) -> str:
    """The commands as a plain list (`kind='commands'`, one a line) or a SLURM job array
    script (`kind='slurm'`, one array task per command; logs in ROOT/slurm-JOB_TASK.out)."""
    lines = [shlex.join(c) for c in commands]
    if kind == "commands":
        return "".join(line + "\n" for line in lines)
    if kind != "slurm":
        raise ConfigError(f"--emit must be 'slurm' or 'commands', got {kind!r}")
    if not lines:
        raise ConfigError("nothing to emit: no trial is left to run")
    quoted = "\n".join(f"  {shlex.quote(line)}" for line in lines)
    return (
        "#!/bin/bash\n"
        f"#SBATCH --job-name={name}\n"
        f"#SBATCH --array=0-{len(lines) - 1}\n"
        f"#SBATCH --output={root}/slurm-%A_%a.out\n"
        "# One array task per run; add --gres, --time, --partition as your cluster needs.\n"
        "set -euo pipefail\n"
        f"COMMANDS=(\n{quoted}\n)\n"
        'eval "${COMMANDS[$SLURM_ARRAY_TASK_ID]}"\n'
    )


def summarize(workdir: Path) -> dict[str, float | str]:
    """Final training and eval metrics of one arm, from its metrics.jsonl."""
    path = layout.metrics_file(workdir)
    row: dict[str, float | str] = {"arm": workdir.name}
    if not path.exists():
        return {**row, "status": "not started"}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        row.update({k: record[k] for k in REPORT_FIELDS if k in record})
    return {**row, "status": "ok"}


def report(arms: Iterable[Arm], root: Path) -> list[dict]:
    """One row per arm; also written to ROOT/report.json and ROOT/report.md, with the started
    arms' curves in ROOT/curves.png."""
    rows = [summarize(root / arm.name) for arm in arms]
    (root / "report.json").write_text(json.dumps(rows, indent=2))
    columns = ["arm", "status", *REPORT_FIELDS]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    started = {row["arm"]: root / row["arm"] for row in rows if row["status"] == "ok"}
    if started:
        from tinylm_jax.orchestration import plot

        plot.save(plot.curves_figure(started), root / "curves.png")
        lines += ["", "![training curves of every started arm](curves.png)"]
        best = {r["arm"]: r["eval_bits_per_byte"] for r in rows if "eval_bits_per_byte" in r}
        if best:
            plot.save(plot.best_figure(best, "final held-out bits per byte"), root / "best.png")
            lines += ["", "![final held-out bits per byte of every arm](best.png)"]
    (root / "report.md").write_text("\n".join(lines) + "\n")
    return rows


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)
