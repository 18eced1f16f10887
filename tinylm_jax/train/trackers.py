"""Experiment trackers: where a run's metric records go besides `metrics.jsonl` and stdout.

One interface (`Tracker`: `log(step, record)`, `close()`), one implementation per name of
`TrainConfig.trackers`: 'tensorboard' (events under `WORKDIR/tensorboard`, with the run
config as hparams for the HParams tab) and 'wandb' (Weights & Biases: the same records as
`metrics.jsonl`, the operative config as the run config, `TrainConfig.tracker_group` as the
group; `WANDB_MODE=offline` keeps the run under `WORKDIR/wandb/`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.run import RunConfig
from tinylm_jax.errors import ConfigError

WANDB_INSTALL = "pip install 'tinylm_jax[wandb]'"
# Metric tags the HParams tab shows beside each run's hparams (the scalars of the same name).
HPARAM_METRICS = ("loss", "eval_loss", "eval_bits_per_byte")


class Tracker(Protocol):
    def log(self, step: int, record: Mapping[str, float]) -> None:
        """One record of `metrics.jsonl` (without `step`), at `step`."""

    def close(self) -> None: ...


def check_available(trackers: Sequence[str]) -> None:
    """Fails (before any expensive work) when a chosen tracker's package is missing."""
    if "wandb" in trackers:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"TrainConfig.trackers names 'wandb', but wandb is not installed; "
                f"{WANDB_INSTALL}, or drop 'wandb' from TrainConfig.trackers"
            ) from None


def run_config_dict(config: RunConfig) -> dict[str, Any]:
    """The operative config as nested plain values (the W&B run config)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def flat_hparams(config: RunConfig) -> dict[str, str | float | int | bool]:
    """`section.field` -> value for every set field (tuples and mappings as JSON text): the
    hparams TensorBoard takes. The gin text itself is left out (W&B keeps it)."""
    flat: dict[str, str | float | int | bool] = {}
    for section, fields in run_config_dict(config).items():
        if section == "gin_config":
            continue
        items = fields.items() if isinstance(fields, dict) else [("", fields)]
        for name, value in items:
            key = f"{section}.{name}" if name else section
            if value is None:
                continue
            is_plain = isinstance(value, (str, float, int, bool))
            flat[key] = value if is_plain else json.dumps(value)
    return flat


class TensorBoardTracker:
    """Scalars under `WORKDIR/tensorboard`, plus the run config (when given) as hparams."""

    def __init__(self, workdir: epath.Path, config: RunConfig | None = None):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        self._writer = SummaryWriter(str(workdir / "tensorboard"))
        self._end = None
        if config is None:
            return
        # In the scalars' own run directory, so the HParams tab joins them to these hparams
        # (SummaryWriter.add_hparams would open a new run directory for them).
        experiment, start, self._end = hparams(flat_hparams(config), dict.fromkeys(HPARAM_METRICS))
        self._writer.file_writer.add_summary(experiment)
        self._writer.file_writer.add_summary(start)

    def log(self, step: int, record: Mapping[str, float]) -> None:
        for key, value in record.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._end is not None:  # the session ended (the HParams tab shows its status)
            self._writer.file_writer.add_summary(self._end)
        self._writer.close()


class WandbTracker:
    """A W&B run per workdir: resumed (same id) when the run resumes, named after the
    workdir, grouped by `TrainConfig.tracker_group`. Project: `WANDB_PROJECT`, else 'tinylm'."""

    def __init__(self, workdir: epath.Path, config: RunConfig):
        import wandb

        id_file = layout.wandb_id_file(workdir)
        group = config.train.tracker_group
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "tinylm"),
            dir=str(workdir),
            id=id_file.read_text().strip() if id_file.exists() else None,  # None: a new run
            resume="allow",
            name=workdir.name,
            group=group,
            tags=[group] if group else None,
            config=run_config_dict(config),
        )
        id_file.write_text(self._run.id)

    def log(self, step: int, record: Mapping[str, float]) -> None:
        self._run.log(dict(record), step=step)

    def close(self) -> None:
        self._run.finish()


def make_trackers(workdir: epath.PathLike, config: RunConfig) -> list[Tracker]:
    """The trackers `config.train.trackers` names (call it on the process that logs)."""
    check_available(config.train.trackers)
    kinds = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}
    return [kinds[name](epath.Path(workdir), config) for name in config.train.trackers]
