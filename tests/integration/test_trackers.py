"""`tinylm train` with `TrainConfig.trackers`: W&B in offline mode gets the records of
metrics.jsonl and the operative config; without the wandb package, asking for it exits 2."""

import sys

import pytest

from tests.helpers import read_metrics, tiny_run
from tests.support.event_logs import tensorboard_events, wandb_config, wandb_history, wandb_run
from tinylm_jax.cli import main as cli


@pytest.mark.slow  # a short training run: ~20 s on 2 cores
def test_train_logs_to_wandb_offline_and_tensorboard(tmp_path, data_dir, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = tmp_path / "ladder_x" / "arm_a"
    params = tiny_run(steps=3) + [
        "TrainConfig.trackers = ('tensorboard', 'wandb')",
        "TrainConfig.tracker_group = 'ladder_x'",
    ]
    args = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin"]
    assert cli.main(args + [f"--gin_param={p}" for p in params]) == 0

    (run_dir,) = (workdir / "wandb").glob("offline-run-*")
    history = [
        {k: v for k, v in r.items() if not k.startswith("_")} for r in wandb_history(run_dir)
    ]
    steps = [r["_step"] for r in wandb_history(run_dir)]
    # W&B keeps one row per step: the eval record of a step joins that step's train record.
    by_step: dict[int, dict] = {}
    for record in read_metrics(workdir):
        by_step.setdefault(record["step"], {}).update(record)
    assert steps == sorted(by_step)
    assert history == [{k: v for k, v in by_step[s].items() if k != "step"} for s in steps]
    assert {"loss", "eval_loss", "eval_bits_per_byte"} <= {k for r in history for k in r}
    config = wandb_config(run_dir)
    assert config["gin_config"] == (workdir / "config.gin").read_text()
    assert config["train"]["trackers"] == ["tensorboard", "wandb"]
    assert wandb_run(run_dir).run_group == "ladder_x"
    tags = {v.tag for e in tensorboard_events(workdir / "tensorboard") for v in e.summary.value}
    assert {"loss", "_hparams_/session_start_info"} <= tags


def test_asking_for_wandb_without_it_exits_2_with_the_install_command(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    params = ["TrainConfig.trackers = ('wandb',)", "DataConfig.paths = ('/no/such/file',)"]
    args = ["train", f"--workdir={tmp_path / 'run'}", "--gin_file=models/tiny_test.gin"]
    assert cli.main(args + [f"--gin_param={p}" for p in params]) == 2
    error = capsys.readouterr().err
    assert "pip install 'tinylm_jax[wandb]'" in error and "TrainConfig.trackers" in error
    assert not (tmp_path / "run").exists()  # failed before touching data or the workdir
