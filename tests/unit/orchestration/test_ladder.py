"""The PanGu-π Pro ladder recipe: its plan (steps, shapes, the user's gin in every step), the
checks on that plan, resumable step running, the rows read back from the arms' workdirs, and
the report. Commands are faked or run in-process here; test_recipe_ladder.py runs them."""

import dataclasses
import json
import subprocess

import pytest
from etils import epath

from tinylm_jax.cli import main as cli
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import ladder as ladder_lib
from tinylm_jax.orchestration import runner

CORPUS = "DataConfig.max_documents = 40"


def test_plan_lists_every_step_in_order_with_the_users_gin(tmp_path):
    ladder = ladder_lib.pangu_ladder(tmp_path, "tiny", gin_params=[CORPUS])
    assert [s.name for s in ladder.steps] == [
        "big_tokenizer",
        "compact_tokenizer",
        "arm_a",
        "arm_b",
        "arm_c",
        "parent",
        "arm_d_inherit",
        "arm_e_inherit",
        "arm_d",
        "arm_e",
    ]
    by_name = {s.name: s.args for s in ladder.steps}
    # Steps that configure a run carry the user's binding (arm_d/arm_e reuse their config).
    assert all(
        f"--gin_param={CORPUS}" in args
        for name, args in by_name.items()
        if name not in ("arm_d", "arm_e")
    )
    assert by_name["arm_e"] == (
        "train",
        f"--workdir={tmp_path}/arm_e_rounds",
        "--gin_param=RoundsConfig.num_rounds = 2",
        "--gin_param=RoundsConfig.unit = 'batch'",  # the paper's unit
    )
    assert f"--parent={tmp_path}/parent" in by_name["arm_d_inherit"]
    assert "--gin_param=InheritConfig.width_metric = 'taylor'" in by_name["arm_e_inherit"]

    given = ladder_lib.pangu_ladder(tmp_path, "tiny", parent="runs/p", tokenizer="big.model")
    names = [s.name for s in given.steps]
    assert "parent" not in names and "big_tokenizer" not in names and "parent" not in given.arms
    assert "--parent=runs/p" in dict((s.name, s.args) for s in given.steps)["arm_d_inherit"]
    with pytest.raises(ConfigError, match="--scale='huge'"):
        ladder_lib.pangu_ladder(tmp_path, "huge")
    with pytest.raises(ConfigError, match="must be smaller than the big one"):
        ladder_lib.pangu_ladder(tmp_path, "tiny", big_vocab=300, compact_vocab=320)


def info_in_process(capsys):
    """`tinylm info --json` of an arm, run in this process."""

    def info(arm):
        capsys.readouterr()
        assert cli.main(["info", "--json", *arm.gin_flags()]) == 0
        return json.loads(capsys.readouterr().out)

    return info


def test_plan_checks_tokens_and_the_parent_shape(tmp_path, capsys, gin_clean):
    ladder = ladder_lib.pangu_ladder(tmp_path, "tiny")
    info = info_in_process(capsys)
    shapes = ladder_lib.check_plan(ladder, info)
    assert len({shapes[a]["train_tokens"] for a in "ABCDE"}) == 1
    assert shapes["B"]["total_params"] < shapes["A"]["total_params"]  # the compact tokenizer
    assert (
        abs(shapes["C"]["total_params"] - shapes["B"]["total_params"]) / shapes["B"]["total_params"]
        < 0.05
    )

    def with_param(key, param):
        arm = ladder.arms[key]
        arm = dataclasses.replace(arm, gin_params=(*arm.gin_params, param))
        return dataclasses.replace(ladder, arms={**ladder.arms, key: arm})

    with pytest.raises(ConfigError, match="larger than the parent in \\['d_model'\\]"):
        ladder_lib.check_plan(with_param("D", "ModelConfig.d_model = 512"), info)
    with pytest.raises(ConfigError, match="same tokens"):
        ladder_lib.check_plan(with_param("A", "TrainConfig.num_steps = 9"), info)
    with_control = ladder_lib.pangu_ladder(tmp_path, "tiny", info=info)
    ladder_lib.dry_run(with_control, info=info)
    out = capsys.readouterr().out
    sizes = {
        line.split(":")[0].strip(): line for line in out.splitlines() if "non-embedding)" in line
    }
    assert set(sizes) == {"A", "B", "C", "C+", "D", "E", "parent"}
    assert f"{shapes['C']['non_embedding_params']:,} non-embedding" in sizes["C"]
    # C+ trains C's model on C's tokens plus the parent's, from random init.
    plus = with_control.arms["C+"]
    assert plus.gin_files == ladder.arms["C"].gin_files and plus.parent is None
    assert "TrainConfig.num_steps = 1800" in plus.gin_params[-1]  # C's 600 + the parent's 1200
    expected = shapes["C"]["train_tokens"] + shapes["parent"]["train_tokens"]
    assert f"{expected:,} training tokens" in sizes["C+"]
    assert "[6/11] arm_cplus\n  " in out and "[11/11] arm_e\n  " in out
    assert "RoundsConfig.num_rounds = 2" in out.splitlines()[-1]
    assert not (tmp_path / "steps").exists()  # nothing ran


def test_arch_budget_sizes_arm_c_equal_to_b_or_near_a(tmp_path, capsys, gin_clean):
    info = info_in_process(capsys)
    sizes = {}
    for budget in ("equal", "reinvest"):
        ladder = ladder_lib.pangu_ladder(tmp_path, "tiny", arch_budget=budget)
        sizes[budget] = {k: info(ladder.arms[k])["total_params"] for k in "ABC"}
        assert ladder.arms["D"].gin_files == ladder.arms["C"].gin_files
    equal, reinvest = sizes["equal"], sizes["reinvest"]
    assert abs(equal["C"] / equal["B"] - 1) < 0.01  # today's tiny sizing
    assert abs(reinvest["C"] / reinvest["A"] - 1) < 0.01  # spends what the compact one freed
    default = ladder_lib.pangu_ladder(tmp_path, "1b")
    assert default.arms["C"].gin_files[1] == "recipes/pangu_ladder/1b/deep_narrow.gin"
    with pytest.raises(ConfigError, match="--arch_budget='half'"):
        ladder_lib.pangu_ladder(tmp_path, "tiny", arch_budget="half")


def test_run_skips_finished_steps_and_stops_at_a_failing_one(tmp_path, capsys, monkeypatch):
    ran = []

    def fake_run(command, check=False):  # step "two" fails like a bad gin file
        ran.append(command[3])
        return subprocess.CompletedProcess(command, 2 if command[3] == "two" else 0)

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    steps = (ladder_lib.Step("one", ("one",)), ladder_lib.Step("two", ("two",)))
    ladder = ladder_lib.Ladder(epath.Path(tmp_path), "tiny", steps, {})
    assert ladder_lib.run(ladder) == 2 and ran == ["one", "two"]
    assert ladder_lib.done_marker(ladder.root, steps[0]).exists()
    assert not ladder_lib.done_marker(ladder.root, steps[1]).exists()
    assert "[2/2] two: rerun to continue" in capsys.readouterr().out
    assert ladder_lib.run(ladder) == 2 and ran[2:] == ["two"]
    assert "[1/2] one: done, skipped" in capsys.readouterr().out


def test_rows_come_from_the_arms_workdirs_and_tinylm_eval(tmp_path, monkeypatch, gin_clean):
    ladder = ladder_lib.pangu_ladder(tmp_path, "tiny")
    workdir = ladder.workdir("E")
    workdir.mkdir()
    (workdir / "config.gin").write_text("TrainConfig.batch_size = 4\nTrainConfig.seq_len = 16\n")
    records = [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}, {"step": 2, "eval_loss": 4.4}]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    commands = []

    def fake_output(command):
        commands.append(command)
        return 'INFO noise\n{"eval_loss": 4.5, "eval_bits_per_byte": 6.5}\n'

    monkeypatch.setattr(ladder_lib.runner, "output", fake_output)
    info = lambda arm: {"total_params": 100, "non_embedding_params": 60}
    row = ladder_lib.collect_row(ladder, "E", eval_steps=3, info=info)
    assert row == {
        "params": 100,
        "non_embedding_params": 60,
        "train_tokens": 2 * 4 * 16,
        "eval_bits_per_byte": 6.5,
        "eval_loss": 4.5,
        "workdir": str(workdir),
    }
    assert commands[0][3:] == ["eval", f"--workdir={workdir}", "--eval_steps=3"]


def test_report_lists_each_step_against_the_paper(tmp_path):
    rows = {
        name: {"params": 1000, "train_tokens": 64, "eval_bits_per_byte": bits, "eval_loss": 1.0}
        for name, bits in zip("ABCDE", [2.0, 1.9, 1.85, 1.7, 1.72], strict=True)
    }
    rows["C+"] = {**rows["C"], "train_tokens": 192, "eval_bits_per_byte": 1.75}
    rows["A"]["non_embedding_params"] = 600
    report = ladder_lib.write_report(epath.Path(tmp_path), rows, None, plot_name="ladder.png")
    assert report["gains"]["B"]["bits_per_byte_change"] == pytest.approx(-0.1)
    assert report["gains"]["E"]["paper_gain"] == 1.49
    assert report["gains"]["C+"]["bits_per_byte_change"] == pytest.approx(-0.1)  # against C
    assert report["gains"]["D"]["vs_control"] == pytest.approx(-0.05)
    text = (tmp_path / "report.md").read_text()
    assert (
        "| D | + parameter inheritance | 1,000 | — | 64 | 1.7000 | -0.1500 | 49.79 | +3.26 |"
        in text
    )
    assert "| C+ | control: C on the parent's tokens + its own | 1,000 | — | 192 | 1.7500 |" in text
    assert "D − C+ = -0.0500 bits/byte" in text
    baseline = "| A | baseline (wide-shallow, big tokenizer, random init) | 1,000 | 600 | 64 |"
    assert f"{baseline} 2.0000 | — |" in text
    assert "![training curves](ladder.png)" in text
    assert json.loads((tmp_path / "report.json").read_text())["arms"]["A"]["params"] == 1000
    rows["E"] = {**rows["E"], "train_tokens": 65}
    with pytest.raises(ConfigError, match="same tokens"):
        ladder_lib.write_report(epath.Path(tmp_path), rows, None, plot_name=None)
