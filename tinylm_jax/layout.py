"""The workdir's files: the one module that names them, and their readers.

A workdir (local or `gs://`) holds the run's operative config, its metrics log (one JSON
object per logged step), its Orbax checkpoints and, for an inherited child, the inheritance
report. Everything that writes or reads one of these asks this module for the path.
"""

from __future__ import annotations

import json

from etils import epath

CONFIG_FILE = "config.gin"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
INHERITANCE_FILE = "inheritance.json"
LM_EVAL_DIR = "lm_eval"
WANDB_ID_FILE = "wandb_run_id"
CMC_FILE = "cmc.json"
TOKEN_MAPS_DIR = "token_maps"


def config_file(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/config.gin`: the operative gin config the run was trained with."""
    return epath.Path(workdir) / CONFIG_FILE


def metrics_file(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/metrics.jsonl`: one JSON object per logged step (train and eval records)."""
    return epath.Path(workdir) / METRICS_FILE


def checkpoints_dir(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/checkpoints/` (Orbax), absolute for local paths as Orbax requires."""
    workdir = epath.Path(workdir)
    return (workdir if "://" in str(workdir) else workdir.absolute()) / CHECKPOINTS_DIR


def inheritance_file(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/inheritance.json`: the report `tinylm inherit` leaves in a child workdir."""
    return epath.Path(workdir) / INHERITANCE_FILE


def lm_eval_results_file(workdir: epath.PathLike, stamp: str) -> epath.Path:
    """`WORKDIR/lm_eval/results_<stamp>.json`: one `tinylm lm-eval` run's results (the
    harness's own file name, so its tools read it)."""
    return epath.Path(workdir) / LM_EVAL_DIR / f"results_{stamp}.json"


def wandb_id_file(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/wandb_run_id`: the W&B run a resumed run keeps logging to."""
    return epath.Path(workdir) / WANDB_ID_FILE


def cmc_file(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/cmc.json`: what `tinylm cmc train` trained a delta workdir beside (its
    template and the tokenizer fingerprint they share)."""
    return epath.Path(workdir) / CMC_FILE


def token_map_file(
    workdir: epath.PathLike, user_fingerprint: str, delta_fingerprint: str
) -> epath.Path:
    """`WORKDIR/token_maps/<user>-<delta>.json`: a delta workdir's cached PM-MinED map from a
    user tokenizer onto its own, named by both tokenizers' fingerprints (16 hex digits each)."""
    name = f"{user_fingerprint[:16]}-{delta_fingerprint[:16]}.json"
    return epath.Path(workdir) / TOKEN_MAPS_DIR / name


def read_metrics(workdir: epath.PathLike) -> list[dict]:
    """Every record of `WORKDIR/metrics.jsonl` in order ([] when the run has not logged)."""
    path = metrics_file(workdir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_values(records: list[dict], key: str) -> dict[int, float]:
    """`{step: value}` of `key` over `records`; a step logged twice (a resumed run) keeps its
    last value."""
    return {r["step"]: r[key] for r in records if key in r}


def is_trained(workdir: epath.PathLike) -> bool:
    """Whether `tinylm train` has configured and logged the run in `workdir`."""
    return config_file(workdir).exists() and metrics_file(workdir).exists()


def tensorboard_dir(workdir: epath.PathLike) -> epath.Path:
    """`WORKDIR/tensorboard/`: TensorBoard events and `--profile_steps` traces."""
    return epath.Path(workdir) / "tensorboard"
