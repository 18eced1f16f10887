"""Runs `tinylm` commands: here one job at a time or `parallel` at once, or elsewhere as a
SLURM job array (or a plain list of command lines) that this module writes.

A job is a chain of commands (e.g. `tinylm inherit` then `tinylm train`) that stops at its
first failure; jobs are independent. Every command resumes what it finds in its workdir, so
rerunning a job that was killed, or that failed, continues it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import shlex
import subprocess
from collections.abc import Callable, Sequence

from etils import epath

from tinylm_jax.errors import ConfigError

EMIT_KINDS = ("slurm", "commands")


@dataclasses.dataclass(frozen=True)
class Job:
    """Commands run in order; `log` (a local file) takes their output, appended, instead of
    this process's stdout."""

    name: str
    commands: tuple[tuple[str, ...], ...]
    log: str | None = None

    def line(self) -> str:
        """The job as one shell line (its commands joined by `&&`)."""
        return " && ".join(shlex.join(c) for c in self.commands)


def job(name: str, commands: Sequence[Sequence[str]], log: epath.PathLike | None = None) -> Job:
    return Job(name, tuple(tuple(c) for c in commands), None if log is None else str(log))


def run_job(job: Job, echo: Callable[[str], None] = print) -> int:
    """Runs the job's commands in order; 0, or the exit status of the first that failed."""
    for command in job.commands:
        if job.log is None:
            code = subprocess.run(command, check=False).returncode
        else:
            epath.Path(job.log).parent.mkdir(parents=True, exist_ok=True)
            with open(job.log, "a") as log:  # a local file: the child writes to its descriptor
                code = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, check=False
                ).returncode
        if code:
            echo(f"{job.name} failed with exit status {code}: {shlex.join(command)}")
            return code
    return 0


def run(jobs: Sequence[Job], parallel: int = 1, echo: Callable[[str], None] = print) -> dict:
    """Runs the jobs, `parallel` at a time; {job name: exit status}."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        codes = pool.map(lambda j: run_job(j, echo), jobs)
        return dict(zip((j.name for j in jobs), codes, strict=True))


def output(command: Sequence[str]) -> str:
    """The stdout of a command that must succeed (its stderr passes through); a failure is a
    ConfigError carrying the command, which the user can rerun to see why."""
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        raise ConfigError(
            f"`{shlex.join(command)}` failed with exit status {result.returncode}; its "
            "error is printed above"
        )
    return result.stdout


def emit(jobs: Sequence[Job], kind: str, name: str, root: epath.PathLike) -> str:
    """The jobs as a plain list (`kind='commands'`, one a line) or a SLURM job array script
    (`kind='slurm'`, one array task per job; logs in ROOT/slurm-JOB_TASK.out)."""
    if kind not in EMIT_KINDS:
        raise ConfigError(f"--emit must be one of {EMIT_KINDS}, got {kind!r}")
    lines = [j.line() for j in jobs]
    if kind == "commands":
        return "".join(line + "\n" for line in lines)
    if not lines:
        raise ConfigError("nothing to emit: no run is left to start")
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
