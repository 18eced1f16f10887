"""Trackers: TensorBoard scalars with the run config as hparams; W&B in offline mode (the run
directory holds the history and the config); the config's tracker names; a clear error when
the wandb package is missing."""

import json
import sys

import pytest

from tests.support.event_logs import tensorboard_events, wandb_config, wandb_history, wandb_run
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.train import trackers
from tinylm_jax.train.metrics import MetricsWriter

RECORDS = [(1, {"loss": 3.5, "learning_rate": 1e-3}), (2, {"loss": 3.0, "round": 1})]


def _config(**train) -> RunConfig:
    return RunConfig(model=ModelConfig(d_model=48), train=TrainConfig(**train))


def test_tensorboard_gets_scalars_and_the_run_config_as_hparams(tmp_path):
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    writer = MetricsWriter(tmp_path, trackers=[trackers.TensorBoardTracker(tmp_path, _config())])
    for step, record in RECORDS:
        writer.write(step, record)
    writer.close()

    values = [
        (e.step, v) for e in tensorboard_events(tmp_path / "tensorboard") for v in e.summary.value
    ]
    scalars = {(step, v.tag): v.simple_value for step, v in values if v.HasField("simple_value")}
    assert scalars == pytest.approx(
        {
            (1, "loss"): 3.5,
            (1, "learning_rate"): 1e-3,
            (2, "loss"): 3.0,
            (2, "round"): 1,
        }
    )
    plugin = {
        v.tag: HParamsPluginData.FromString(v.metadata.plugin_data.content)
        for _, v in values
        if v.metadata.plugin_data.plugin_name == "hparams"
    }
    assert set(plugin) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    hparams = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["model.d_model"].number_value == 48
    assert hparams["train.trackers"].string_value == '["tensorboard"]'
    assert hparams["model.dtype"].string_value == _config().model.dtype  # resolved
    metrics = [m.name.tag for m in plugin["_hparams_/experiment"].experiment.metric_infos]
    assert metrics == list(trackers.HPARAM_METRICS)
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == [
        json.dumps({"step": s, **r}) for s, r in RECORDS
    ]


def test_wandb_offline_run_holds_the_records_config_and_group(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = tmp_path / "arm_a"
    workdir.mkdir()
    config = _config(trackers=("wandb",), tracker_group="sweep_x")
    writer = MetricsWriter(workdir, trackers=trackers.make_trackers(workdir, config))
    for step, record in RECORDS:
        writer.write(step, record)
    writer.close()

    (run_dir,) = (workdir / "wandb").glob("offline-run-*")
    history = [
        {k: v for k, v in row.items() if not k.startswith("_") or k == "_step"}
        for row in wandb_history(run_dir)
    ]
    assert history == [{"_step": s, **r} for s, r in RECORDS]
    logged = wandb_config(run_dir)
    assert logged["model"]["d_model"] == 48 and logged["train"]["tracker_group"] == "sweep_x"
    assert logged["gin_config"] == ""
    run = wandb_run(run_dir)
    assert (run.run_group, run.display_name, list(run.tags)) == ("sweep_x", "arm_a", ["sweep_x"])
    assert run.run_id == (workdir / "wandb_run_id").read_text()  # a resumed run reuses it


def test_missing_wandb_is_a_config_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tinylm_jax\[wandb\]'"):
        trackers.check_available(("tensorboard", "wandb"))
    trackers.check_available(("tensorboard",))


@pytest.mark.parametrize("bad", [("tensorbord",), "wandb", ("wandb", "wandb")])
def test_tracker_names_are_checked(bad):
    with pytest.raises(ConfigError, match="TrainConfig.trackers"):
        TrainConfig(trackers=bad)
