"""Grid sweeps: spec lookup and expansion into arms of gin overrides."""

import logging
from pathlib import Path

import pytest

from tinylm_jax.config import gin as gin_lib
from tinylm_jax.config.gin import CONFIGS_DIR
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import budget
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


def test_specs_are_found_like_gin_files_and_old_paths_still_work(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    shipped = CONFIGS_DIR / "sweeps" / "pangu_rounds.py"
    assert sweep.resolve_spec("sweeps/pangu_rounds.py") == shipped
    assert sweep.load_spec("sweeps/pangu_rounds.py").name == "pangu_rounds"
    with caplog.at_level(logging.WARNING):
        assert sweep.resolve_spec("launch/sweeps/pangu_rounds.py") == shipped
    assert "pass --spec=sweeps/pangu_rounds.py" in caplog.text
    with pytest.raises(ConfigError, match="moved to configs/sweeps/, and sweeps/gone.py is not"):
        sweep.resolve_spec("launch/sweeps/gone.py")
    with pytest.raises(ConfigError, match="e.g. --spec=sweeps/pangu_depth_width.py"):
        sweep.resolve_spec("sweeps/gone.py")
    mine = tmp_path / "sweeps" / "pangu_rounds.py"  # a path as given comes first
    mine.parent.mkdir()
    mine.write_text("")
    assert sweep.resolve_spec("sweeps/pangu_rounds.py") == Path("sweeps/pangu_rounds.py")
    with pytest.raises(ConfigError, match="defines no get_config"):
        sweep.load_spec("sweeps/pangu_rounds.py")


def test_an_inheriting_arm_is_one_job_of_inherit_then_train(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path))
    spec.inherit_from = "runs/parent"
    deep, _ = sweep.jobs(sweep.expand(spec), tmp_path)
    assert [c[3] for c in deep.commands] == ["inherit", "train"]
    assert " inherit --parent=runs/parent " in deep.line() and " && " in deep.line()


def test_every_shipped_grid_arm_is_a_valid_run(gin_clean):
    """Each arm of each shipped grid spec parses into a RunConfig that passes its checks
    (round lengths add up to the steps, known selections, ...), before anyone trains it."""
    specs = sorted((CONFIGS_DIR / "sweeps").glob("*.py"))
    assert any(p.name == "pangu_rounds_rate.py" for p in specs)
    for path in specs:
        spec = sweep.load_spec(path)
        if budget.strategy(spec) != "grid":  # ER-UCB specs draw trials while they run
            continue
        for arm in sweep.expand(spec):
            config = gin_lib.parse(arm.gin_files, arm.gin_params)
            assert config.train.num_steps > 0, (path.name, arm.name)
