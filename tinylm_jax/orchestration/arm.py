"""An arm: one run of many (a sweep's grid point, a budgeted trial, a ladder rung), named by
its gin. The one place that writes `tinylm` command lines.

Orchestration never configures a run in-process: an arm becomes `tinylm train` (after
`tinylm inherit` when it has a parent) with the arm's gin flags, so any arm can be rerun or
resumed by hand with the command a dry run prints.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from etils import epath

from tinylm_jax import layout


def tinylm(args: Sequence[str], launcher: Sequence[str] = ()) -> list[str]:
    """The command line of `tinylm ARGS`: this interpreter's `python -m tinylm_jax.cli` (the
    installed package, whatever PATH holds), or the bare arguments after `launcher` (e.g.
    `launch/tpu_pod.sh TPU ZONE --`), which starts `tinylm` where it runs."""
    if launcher:
        return [*launcher, *args]
    return [sys.executable, "-m", "tinylm_jax.cli", *args]


def gin_flags(files: Sequence[str], params: Sequence[str]) -> tuple[str, ...]:
    return (*(f"--gin_file={f}" for f in files), *(f"--gin_param={p}" for p in params))


@dataclasses.dataclass(frozen=True)
class Arm:
    """A run configured by gin files then params; `parent` (a trained workdir) makes the arm
    start from `tinylm inherit` instead of random init. Its workdir is given per command (by
    convention ROOT/NAME). `group` (the sweep or recipe) becomes the run's
    `TrainConfig.tracker_group`, which groups its arms in W&B."""

    name: str
    gin_files: tuple[str, ...] = ()
    gin_params: tuple[str, ...] = ()
    parent: str | None = None
    group: str | None = None

    def gin_flags(self) -> tuple[str, ...]:
        return gin_flags(self.gin_files, self.gin_params)

    def train_args(self, workdir: epath.PathLike) -> tuple[str, ...]:
        group = () if self.group is None else (f"TrainConfig.tracker_group = {self.group!r}",)
        return ("train", f"--workdir={workdir}", *self.gin_flags(), *gin_flags((), group))

    def inherit_args(self, workdir: epath.PathLike, parent: str | None = None) -> tuple[str, ...]:
        parent = parent or self.parent
        return ("inherit", f"--parent={parent}", f"--workdir={workdir}", *self.gin_flags())

    def command(self, workdir: epath.PathLike, subcommand: str = "train") -> list[str]:
        """`tinylm train` (or `inherit`) of the arm in `workdir`."""
        args = self.inherit_args(workdir) if subcommand == "inherit" else self.train_args(workdir)
        return tinylm(args)

    def commands(self, workdir: epath.PathLike) -> list[list[str]]:
        """The arm's commands still to run: inheritance (once: skipped when the workdir holds
        its report), then training (which resumes a started run)."""
        train = [self.command(workdir)]
        if self.parent is None or layout.inheritance_file(workdir).exists():
            return train
        return [self.command(workdir, "inherit"), *train]
