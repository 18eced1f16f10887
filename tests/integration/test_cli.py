"""The `tinylm` command line end to end: errors, info, the demo config on 1 and 8 devices."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import TINY_DATA, train_losses, xla_flags
from tinylm_jax.cli import main as cli

DEMO = ["--gin_file=experiments/demo.gin"]


def short_demo(steps: int, seq_len: int = 64) -> list[str]:
    """The demo config itself, with a small corpus and a short run."""
    overrides = TINY_DATA + [
        f"TrainConfig.num_steps = {steps}",
        f"TrainConfig.seq_len = {seq_len}",
        "TrainConfig.log_every = 1",
        "TrainConfig.eval_steps = 2",
        "TrainConfig.eval_every = 0",
        "CheckpointConfig.async_save = False",
    ]
    return DEMO + [f"--gin_param={p}" for p in overrides]


def run_cli(args: list[str], devices: int, data_dir: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        TINYLM_DATA_DIR=data_dir,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=xla_flags(devices),
    )
    return subprocess.run(
        [sys.executable, "-m", "tinylm_jax.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_misspelled_gin_binding_is_a_clear_error(capsys, tmp_path):
    code = cli.main(
        ["train", f"--workdir={tmp_path}", *DEMO, "--gin_param=TrainConfig.num_stesp = 3"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "TrainConfig" in err and "num_stesp" in err and "Did you mean num_steps" in err


def test_unknown_configurable_and_missing_file(capsys, tmp_path):
    assert cli.main(["info", "--gin_param=ModelCononfig.d_model = 3"]) == 2
    assert "Did you mean ModelConfig" in capsys.readouterr().err
    assert cli.main(["info", "--gin_file=nope/missing.gin"]) == 2
    assert "missing.gin' not found" in capsys.readouterr().err


def test_sampling_defaults_suit_small_models_and_help_shows_them(capsys):
    args = cli.build_parser().parse_args(["sample", "--workdir=w", "--prompt=a"])
    assert (args.temperature, args.top_p, args.top_k, args.seed) == (0.8, 0.95, 0, 0)
    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    assert "(default: 0.8)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["info", "--help"], ["sample", "--help"], ["train", "--help"]],
)
def test_help_imports_no_jax(argv):
    """The command table loads light modules: help needs neither JAX nor gin."""
    code = (
        "import sys, contextlib, io\n"
        "from tinylm_jax.cli import main as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        cli.main({argv!r})\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code == 0\n"
        "print([m for m in ('jax', 'numpy', 'gin') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "tinylm_jax.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(name in out.stdout for name in cli.COMMANDS)


def test_info_counts_tinyllama_without_allocating(capsys):
    assert cli.main(["info", "--gin_file=models/tinyllama_1_1b.gin", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total_params"] == 1_100_048_384
    assert stats["embedding_params"] == 2 * 32000 * 2048


def test_unshardable_mesh_from_the_command_line(capsys, tmp_path, data_dir):
    code = cli.main(
        ["train", f"--workdir={tmp_path}", *short_demo(2), "--gin_param=MeshConfig.tensor = 8"]
    )
    assert code == 2
    assert "not divisible by mesh axes ('tensor',)" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_loss_falls_and_sample_runs(tmp_path, data_dir, capsys):
    workdir = tmp_path / "demo"
    assert cli.main(["train", f"--workdir={workdir}", *short_demo(40)]) == 0
    summary = capsys.readouterr().out
    assert "final train loss" in summary and "bits per byte" in summary
    assert f"tinylm sample --workdir={workdir}" in summary
    assert f"tensorboard --logdir={workdir}/tensorboard" in summary
    losses = train_losses(workdir)
    assert losses[40] < losses[1] - 2.5, losses
    assert (workdir / "config.gin").read_text().count("ModelConfig.d_model = 256") == 1
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu"} <= set(
        records[0]
    )
    assert any("eval_bits_per_byte" in r and "eval_loss" in r for r in records)
    capsys.readouterr()

    assert (
        cli.main(
            [
                "sample",
                f"--workdir={workdir}",
                "--prompt=import os",
                "--prompt=def ",
                "--max_new_tokens=8",
                "--json",
            ]
        )
        == 0
    )
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in results] == ["import os", "def "]
    assert all(0 < len(r["completion_ids"]) <= 8 for r in results)
    # The defaults sample with a fixed seed: the same command gives the same text.
    again = ["sample", f"--workdir={workdir}", "--prompt=import os", "--max_new_tokens=8"]
    assert cli.main(again) == 0 and cli.main(again) == 0
    first, second = capsys.readouterr().out.split("--- prompt:")[1:]
    assert first == second

    assert cli.main(["eval", f"--workdir={workdir}", "--eval_steps=2"]) == 0
    evaluation = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluation["eval_bits_per_byte"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("mesh", [["data=2", "fsdp=2", "tensor=2"]])
def test_demo_on_one_and_eight_devices_from_the_command_line(tmp_path, data_dir, mesh):
    one = run_cli(["train", f"--workdir={tmp_path / 'one'}", *short_demo(3)], 1, data_dir)
    assert one.returncode == 0, one.stderr[-3000:]
    eight = run_cli(
        ["train", f"--workdir={tmp_path / 'eight'}", *short_demo(3)]
        + [f"--gin_param=MeshConfig.{m}" for m in mesh],
        8,
        data_dir,
    )
    assert eight.returncode == 0, eight.stderr[-3000:]
    assert "'data': 2, 'fsdp': 2, 'tensor': 2" in eight.stdout
    one_losses, eight_losses = train_losses(tmp_path / "one"), train_losses(tmp_path / "eight")
    assert sorted(one_losses) == [1, 2, 3]
    for step, loss in one_losses.items():
        assert eight_losses[step] == pytest.approx(loss, rel=1e-5)
