"""`tinylm bench --mode=decode` and `--profile_steps` end to end through the CLI."""

import json

import pytest

from tinylm_jax.cli import main as cli


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_decode_bench_ends_with_its_json_contract(capsys, gin_clean):
    args = ["bench", "--mode=decode", "--gin_file=models/tiny_test.gin", "--batch_size=2"]
    assert cli.main(args + ["--prompt_len=8", "--new_tokens=4", "--repeats=1"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["decode_tokens_per_second"] > 0 and result["prefill_seconds"] > 0
    assert result["batch_size"] == 2 and result["new_tokens"] == 4
    assert 0 < result["bandwidth_utilisation"]


@pytest.mark.slow
def test_train_bench_profile_steps_writes_a_trace(capsys, gin_clean, tmp_path):
    args = ["bench", "--gin_file=models/tiny_test.gin", "--steps=3", "--warmup_steps=0"]
    args += ["--gin_param=TrainConfig.batch_size = 8", "--gin_param=TrainConfig.seq_len = 16"]
    assert cli.main(args + ["--profile_steps=1:2", f"--profile_dir={tmp_path}"]) == 0
    assert last_json(capsys.readouterr().out)["steps"] == 3
    traces = list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_a_bad_profile_spec_exits_2(capsys, gin_clean):
    args = ["bench", "--gin_file=models/tiny_test.gin", "--profile_steps=5"]
    assert cli.main(args) == 2
    assert "--profile_steps='5': expected A:B" in capsys.readouterr().err


def test_workdir_without_decode_mode_exits_2(capsys, gin_clean, tmp_path):
    assert cli.main(["bench", "--gin_file=models/tiny_test.gin", f"--workdir={tmp_path}"]) == 2
    assert "--mode=decode only" in capsys.readouterr().err
