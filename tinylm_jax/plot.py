"""Training curves of one or several runs on one figure (`tinylm plot`, sweep and recipe reports).

Every curve is read from a workdir's `metrics.jsonl` and drawn against tokens seen (step ×
the run's tokens per step, from its `config.gin`), so runs with other batch shapes line up.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping

from etils import epath

from tinylm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Curves:
    """One run's logged series: train loss and held-out bits per byte against tokens seen."""

    train_tokens: tuple[int, ...]
    train_loss: tuple[float, ...]
    eval_tokens: tuple[int, ...]
    eval_bits_per_byte: tuple[float, ...]


def tokens_per_step(workdir: epath.PathLike) -> int:
    """Global batch × sequence length of the run in `workdir`, from its saved config."""
    from tinylm_jax import config as config_lib
    from tinylm_jax.workdir import config_path

    return config_lib.parse(workdir_config=config_path(workdir)).train.tokens_per_step


def read_curves(workdir: epath.PathLike) -> Curves:
    """The curves of one run; a step logged twice (a resumed run) keeps its last value."""
    path = epath.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        raise ConfigError(f"{path} does not exist: is {workdir} a `tinylm train` workdir?")
    train, evals = {}, {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            train[record["step"]] = record["loss"]
        if "eval_bits_per_byte" in record:
            evals[record["step"]] = record["eval_bits_per_byte"]
    per_step = tokens_per_step(workdir)
    train_steps, eval_steps = sorted(train), sorted(evals)
    return Curves(
        train_tokens=tuple(s * per_step for s in train_steps),
        train_loss=tuple(train[s] for s in train_steps),
        eval_tokens=tuple(s * per_step for s in eval_steps),
        eval_bits_per_byte=tuple(evals[s] for s in eval_steps),
    )


def curves_figure(runs: Mapping[str, epath.PathLike]):
    """A matplotlib Figure: train loss (left) and held-out bits per byte (right) against
    tokens, one line per run, labelled by the mapping's keys."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or used
    from matplotlib.figure import Figure

    if not runs:
        raise ConfigError("nothing to plot: give at least one workdir")
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, bits_ax = figure.subplots(1, 2)
    for label, workdir in runs.items():
        curves = read_curves(workdir)
        loss_ax.plot(curves.train_tokens, curves.train_loss, label=label)
        # A run with a single eval (the final one) still shows as a point.
        bits_ax.plot(curves.eval_tokens, curves.eval_bits_per_byte, marker=".", label=label)
    for ax, title in ((loss_ax, "train loss (nats/token)"), (bits_ax, "held-out bits per byte")):
        ax.set_title(title)
        ax.set_xlabel("tokens seen")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def save(figure, path: epath.PathLike) -> epath.Path:
    """Writes the figure as PNG to `path` (local or gs://); returns the path."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path.write_bytes(buffer.getvalue())
    return path
