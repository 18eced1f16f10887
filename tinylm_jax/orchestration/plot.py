"""The project's figures: training curves of one or several runs (`tinylm plot`, sweep and
recipe reports), the best result per sweep arm, and the budget a sweep gave each arm.

Every curve is read from a workdir's metrics log and drawn against tokens seen (step × the
run's tokens per step, from its saved config), so runs with other batch shapes line up.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence

from etils import epath

from tinylm_jax import layout
from tinylm_jax.errors import ConfigError, require_extra
from tinylm_jax.workdir.load import tokens_per_step


@dataclasses.dataclass(frozen=True)
class Curves:
    """One run's logged series: train loss and held-out bits per byte against tokens seen."""

    train_tokens: tuple[int, ...]
    train_loss: tuple[float, ...]
    eval_tokens: tuple[int, ...]
    eval_bits_per_byte: tuple[float, ...]


def read_curves(workdir: epath.PathLike) -> Curves:
    """The curves of one run; a step logged twice (a resumed run) keeps its last value."""
    path = layout.metrics_file(workdir)
    if not path.exists():
        raise ConfigError(f"{path} does not exist: is {workdir} a `tinylm train` workdir?")
    records = layout.read_metrics(workdir)
    train = layout.last_values(records, "loss")
    evals = layout.last_values(records, "eval_bits_per_byte")
    per_step = tokens_per_step(workdir)
    train_steps, eval_steps = sorted(train), sorted(evals)
    return Curves(
        train_tokens=tuple(s * per_step for s in train_steps),
        train_loss=tuple(train[s] for s in train_steps),
        eval_tokens=tuple(s * per_step for s in eval_steps),
        eval_bits_per_byte=tuple(evals[s] for s in eval_steps),
    )


def _figure(**kwargs):
    require_extra("matplotlib", "plot", "drawing training curves")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or used
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def curves_figure(runs: Mapping[str, epath.PathLike]):
    """A matplotlib Figure: train loss (left) and held-out bits per byte (right) against
    tokens, one line per run, labelled by the mapping's keys."""
    if not runs:
        raise ConfigError("nothing to plot: give at least one workdir")
    figure = _figure(figsize=(11, 4.2))
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


def best_figure(best: Mapping[str, float], title: str = "best held-out bits per byte"):
    """A bar chart of one value per arm (lower is better), labelled with the values."""
    if not best:
        raise ConfigError("nothing to plot: no arm has a result yet")
    figure = _figure(figsize=(max(4.0, 1.1 * len(best) + 2), 3.6))
    ax = figure.subplots()
    bars = ax.bar(list(best), list(best.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.4g", fontsize="small")
    ax.set_title(title)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.grid(axis="y", alpha=0.3)
    return figure


def budget_figure(pulls: Sequence[tuple[str, int]], arms: Sequence[str]):
    """The training steps each arm had received as the sweep spent its budget: `pulls` are
    (arm, steps) of the trials in the order they were started."""
    if not pulls:
        raise ConfigError("nothing to plot: the sweep has started no trial")
    figure = _figure(figsize=(7, 4))
    ax = figure.subplots()
    spent, per_arm = [0], {arm: [0] for arm in arms}
    for arm, steps in pulls:
        spent.append(spent[-1] + steps)
        for name, series in per_arm.items():
            series.append(series[-1] + (steps if name == arm else 0))
    for name, series in per_arm.items():
        ax.plot(spent, series, marker=".", label=name)
    ax.set_title("budget given to each arm")
    ax.set_xlabel("sweep steps spent (all arms)")
    ax.set_ylabel("steps given to the arm")
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
