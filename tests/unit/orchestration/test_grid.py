"""Sweeps: spec expansion into gin overrides, dry runs, and a real two-arm run with a report."""


import pytest

from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import grid as sweep

SPEC = """
import ml_collections

def get_config():
    return ml_collections.ConfigDict({{
        "name": "tiny",
        "gin_files": ["models/tiny_test.gin"],
        "params": {params},
        "arms": [{{"name": "deep", "params": {{"ModelConfig": {{"n_layers": 2}}}}}},
                 {{"name": "shallow", "params": {{"ModelConfig": {{"n_layers": 1}}}}}}],
        "grid": {grid},
    }})
"""
TINY_PARAMS = {
    "DataConfig": {
        "dataset": "python_stdlib",
        "max_documents": 60,
        "vocab_size": 512,
        "validation_fraction": 0.05,
    },
    "TrainConfig": {
        "num_steps": 2,
        "batch_size": 8,
        "seq_len": 32,
        "log_every": 1,
        "eval_steps": 1,
    },
    "CheckpointConfig": {"async_save": False},
}


def write_spec(tmp_path, params=None, grid=None):
    path = tmp_path / "spec.py"
    path.write_text(SPEC.format(params=params or {}, grid=grid or {}))
    return path


def test_arms_cross_the_grid_with_named_points(tmp_path):
    spec = sweep.load_spec(
        write_spec(
            tmp_path,
            params={"TrainConfig": {"seed": 3}},
            grid={"ModelConfig": {"tie_embeddings": [True, False]}},
        )
    )
    arms = sweep.expand(spec)
    assert [a.name for a in arms] == [
        "deep_tie_embeddings-True",
        "deep_tie_embeddings-False",
        "shallow_tie_embeddings-True",
        "shallow_tie_embeddings-False",
    ]
    assert arms[3].gin_params == (
        "TrainConfig.seed = 3",
        "ModelConfig.n_layers = 1",
        "ModelConfig.tie_embeddings = False",
    )
    assert arms[0].gin_files == ("models/tiny_test.gin",)


def test_bad_specs_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        sweep.load_spec(tmp_path / "missing.py")
    spec = sweep.load_spec(write_spec(tmp_path, grid={"ModelConfig": {"d_model": []}}))
    with pytest.raises(ConfigError, match="non-empty list"):
        sweep.expand(spec)
