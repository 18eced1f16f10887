"""Curves: `tinylm plot` draws one line per run from metrics.jsonl, against tokens seen."""

import json

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


def test_a_resumed_run_keeps_the_last_value_of_a_step(tmp_path, gin_clean):
    run = fake_run(tmp_path / "run", 1, 8, {1: 5.0, 2: 4.0}, {})
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 2, "loss": 3.5}) + "\n")
    curves = plot.read_curves(run)
    assert curves.train_tokens == (8, 16) and curves.train_loss == (5.0, 3.5)
