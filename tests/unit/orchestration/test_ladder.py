"""The PanGu-π Pro ladder recipe: its plan (steps, shapes, the user's gin in every step), the
checks on that plan, resumable step running, and the report."""

import dataclasses
import json

import pytest
from etils import epath

from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import ladder as ladder_lib

CORPUS = "DataConfig.max_documents = 40"


def test_plan_checks_tokens_and_the_parent_shape(tmp_path, gin_clean):
    ladder = ladder_lib.pangu_ladder(tmp_path, "tiny")
    shapes = ladder_lib.check_plan(ladder)
    assert len({shapes[a]["train_tokens"] for a in "ABCDE"}) == 1
    assert shapes["B"]["params"] < shapes["A"]["params"]  # the compact tokenizer's saving
    assert abs(shapes["C"]["params"] - shapes["B"]["params"]) / shapes["B"]["params"] < 0.05

    big_child = dataclasses.replace(
        ladder.arms["D"], gin_params=ladder.arms["D"].gin_params + ("ModelConfig.d_model = 512",)
    )
    with pytest.raises(ConfigError, match="larger than the parent in \\['d_model'\\]"):
        ladder_lib.check_plan(dataclasses.replace(ladder, arms={**ladder.arms, "D": big_child}))
    longer = dataclasses.replace(
        ladder.arms["A"], gin_params=ladder.arms["A"].gin_params + ("TrainConfig.num_steps = 9",)
    )
    with pytest.raises(ConfigError, match="same tokens"):
        ladder_lib.check_plan(dataclasses.replace(ladder, arms={**ladder.arms, "A": longer}))
    with pytest.raises(ConfigError, match="--scale='huge'"):
        ladder_lib.pangu_ladder(tmp_path, "huge")


def test_run_skips_finished_steps_and_stops_at_a_failing_one(tmp_path, capsys):
    info = ("info", "--gin_file=models/tiny_test.gin", "--json")
    steps = (ladder_lib.Step("one", info), ladder_lib.Step("two", ("info", "--gin_file=nope.gin")))
    ladder = ladder_lib.Ladder(epath.Path(tmp_path), "tiny", steps, {})
    assert ladder_lib.run(ladder) == 2  # step two's bad gin file: exit status 2
    assert ladder_lib.done_marker(ladder.root, steps[0]).exists()
    assert not ladder_lib.done_marker(ladder.root, steps[1]).exists()
    capsys.readouterr()
    ladder = dataclasses.replace(ladder, steps=steps[:1])
    assert ladder_lib.run(ladder) == 0
    assert "[1/1] one: done, skipped" in capsys.readouterr().out


def test_report_lists_each_step_against_the_paper(tmp_path):
    rows = {
        name: {"params": 1000, "train_tokens": 64, "eval_bits_per_byte": bits, "eval_loss": 1.0}
        for name, bits in zip("ABCDE", [2.0, 1.9, 1.85, 1.7, 1.72], strict=True)
    }
    report = ladder_lib.write_report(epath.Path(tmp_path), rows, None, plot_name="ladder.png")
    assert report["gains"]["B"]["bits_per_byte_change"] == pytest.approx(-0.1)
    assert report["gains"]["E"]["paper_gain"] == 1.49
    text = (tmp_path / "report.md").read_text()
    assert "| D | + parameter inheritance | 1,000 | 64 | 1.7000 | -0.1500 | 49.79 | +3.26 |" in text
    assert "![training curves](ladder.png)" in text
    assert json.loads((tmp_path / "report.json").read_text())["arms"]["A"]["params"] == 1000
    rows["E"] = {**rows["E"], "train_tokens": 65}
    with pytest.raises(ConfigError, match="same tokens"):
        ladder_lib.write_report(epath.Path(tmp_path), rows, None, plot_name=None)
