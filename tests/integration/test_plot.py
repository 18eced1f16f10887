"""Curves: `tinylm plot` draws one line per run from metrics.jsonl, against tokens seen."""

import json

import matplotlib.image
import pytest

from tinylm_jax.cli import main as cli
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import plot


def fake_run(workdir, batch_size: int, seq_len: int, losses: dict, bits: dict):
    """A workdir with only what `plot` reads: the saved config and the metrics log."""
    workdir.mkdir(parents=True)
    (workdir / "config.gin").write_text(
        f"TrainConfig.batch_size = {batch_size}\nTrainConfig.seq_len = {seq_len}\n"
    )
    records = [{"step": s, "loss": v, "learning_rate": 1e-3} for s, v in losses.items()]
    records += [{"step": s, "eval_loss": 2 * v, "eval_bits_per_byte": v} for s, v in bits.items()]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return workdir


def test_plot_writes_a_png_with_one_line_per_run_against_tokens(tmp_path, gin_clean):
    a = fake_run(tmp_path / "a", 4, 32, {1: 6.0, 2: 5.0, 3: 4.5}, {3: 2.1})
    b = fake_run(tmp_path / "b", 2, 16, {2: 7.0, 4: 6.5}, {2: 3.0, 4: 2.8})
    out = tmp_path / "plots" / "curves.png"
    argv = ["plot", f"--workdir={a}", f"--workdir={b}", "--label=A", "--label=B", f"--out={out}"]
    assert cli.main(argv) == 0
    assert matplotlib.image.imread(out).shape[2] in (3, 4)  # a readable PNG

    figure = plot.curves_figure({"A": a, "B": b})
    loss_ax, bits_ax = figure.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["A", "B"]
    (loss_a, loss_b), (bits_a, bits_b) = loss_ax.get_lines(), bits_ax.get_lines()
    assert list(loss_a.get_xdata()) == [128, 256, 384] and list(loss_a.get_ydata()) == [6, 5, 4.5]
    assert list(loss_b.get_xdata()) == [64, 128] and list(loss_b.get_ydata()) == [7, 6.5]
    assert list(bits_a.get_xdata()) == [384] and list(bits_a.get_ydata()) == [2.1]
    assert list(bits_b.get_xdata()) == [64, 128] and list(bits_b.get_ydata()) == [3.0, 2.8]


def test_plot_errors_are_clear(tmp_path, capsys, gin_clean):
    assert cli.main(["plot", f"--workdir={tmp_path}", f"--out={tmp_path}/x.png"]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    run = fake_run(tmp_path / "run", 1, 8, {1: 5.0}, {})
    argv = ["plot", f"--workdir={run}", "--label=a", "--label=b", f"--out={tmp_path}/x.png"]
    assert cli.main(argv) == 2
    assert "2 --label for 1 --workdir" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot.curves_figure({})
