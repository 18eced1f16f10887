"""The PanGu-π Pro ladder through real `tinylm` subprocesses: the command line's dry run (each
arm's `tinylm info`), then one chain that runs every kind of step once (both tokenizers, a
from-scratch run, an inheritance, a training in rounds) and the report read back from it.
The plan, its checks and the report's table are unit-tested (tests/unit/orchestration)."""

import dataclasses
import json

import pytest

from tinylm_jax.cli import main as cli
from tinylm_jax.orchestration import ladder as ladder_lib

MICRO = [
    "DataConfig.dataset = 'python_stdlib'",
    "DataConfig.max_documents = 20",
    "DataConfig.validation_fraction = 0.05",
    "TrainConfig.num_steps = 2",
    "TrainConfig.batch_size = 8",
    "TrainConfig.seq_len = 32",
    "TrainConfig.eval_every = 0",
    "TrainConfig.eval_steps = 1",
    "TrainConfig.log_every = 1",
    "CheckpointConfig.async_save = False",
    "RoundsConfig.score_batch_size = 256",  # arm E scores every training sequence
]
SIZES = ["--scale=tiny", "--big_vocab=512", "--compact_vocab=320"]
# The steps that are not repeats of another step's kind.
CHAIN = ("big_tokenizer", "compact_tokenizer", "parent", "arm_e_inherit", "arm_e")


def test_dry_run_prints_every_arms_shape_and_every_step(tmp_path, capsys):
    argv = ["recipe", "run", f"--root={tmp_path}", "--dry_run", *SIZES]
    assert cli.main([*argv, *(f"--gin_param={p}" for p in MICRO)]) == 0
    out = capsys.readouterr().out
    shapes = {line.split(":")[0].strip() for line in out.splitlines() if "params (" in line}
    assert shapes == {"A", "B", "C", "C+", "D", "E", "parent"}
    assert out.count(f"{2 * 8 * 32:,} training tokens") == 6
    assert out.count(f"{2 * 2 * 8 * 32:,} training tokens") == 1  # C+: C's plus the parent's
    assert "[11/11] arm_e" in out and not (tmp_path / "steps").exists()  # nothing ran


@pytest.mark.slow
def test_one_chain_of_every_step_kind_runs_resumes_and_reports(tmp_path, data_dir, capsys):
    # The steps run on 8 virtual CPU devices (tests/conftest.py), arm E's scoring pass too.
    root = tmp_path / "ladder"
    ladder = ladder_lib.pangu_ladder(
        root, "tiny", gin_params=MICRO, big_vocab=512, compact_vocab=320
    )
    chain = dataclasses.replace(ladder, steps=tuple(s for s in ladder.steps if s.name in CHAIN))
    assert [s.name for s in chain.steps] == list(CHAIN)
    assert ladder_lib.run(chain) == 0
    assert sorted(p.stem for p in (root / "steps").glob("*.done")) == sorted(CHAIN)
    rounds = [json.loads(line) for line in (root / "arm_e_rounds" / "metrics.jsonl").open()]
    assert {r["round"] for r in rounds if "round" in r} == {1, 2}
    capsys.readouterr()
    assert ladder_lib.run(chain) == 0  # finished: a rerun skips every step
    assert capsys.readouterr().out.count("done, skipped") == len(CHAIN)

    # The report of a ladder midway: the trained arm (E) and the parent, from their workdirs.
    argv = ["recipe", "report", f"--root={root}", *SIZES, "--eval_steps=1"]
    assert cli.main([*argv, *(f"--gin_param={p}" for p in MICRO)]) == 0
    assert "| E | + multiple-round training |" in capsys.readouterr().out
    report = json.loads((root / "report.json").read_text())
    assert list(report["arms"]) == ["E"] and report["gains"]["E"]["bits_per_byte_change"] is None
    assert report["arms"]["E"]["train_tokens"] == report["parent"]["train_tokens"] == 2 * 8 * 32
    assert 0 < report["arms"]["E"]["eval_bits_per_byte"] < 16
    assert report["arms"]["E"]["params"] < report["parent"]["params"]
    assert (root / "ladder.png").read_bytes().startswith(b"\x89PNG")
