"""Budgeted sweeps: the ER-UCB allocator on synthetic arms, ZOOpt on synthetic objectives, sweep
state and resume with an injected trainer, emitted waves, shipped specs, and one real run."""

import json
import math
import shlex
import sys
from pathlib import Path

import ml_collections
import pytest

from tinylm_jax.cli import main as cli
from tinylm_jax.config.gin import CONFIGS_DIR
from tinylm_jax.orchestration import budget as sweep_budget
from tinylm_jax.orchestration import grid as sweep
from tinylm_jax.orchestration import sweep_state
from tinylm_jax.train.loop import TrainHooks

ARM_OFFSETS = {"small": 2.0, "medium": 1.6, "large": 1.8}


def spec_dict(**changes) -> ml_collections.ConfigDict:
    spec = {
        "name": "synthetic",
        "gin_files": ["models/tiny_test.gin"],
        "arms": [{"name": a, "params": {"ModelConfig": {"d_model": 8}}} for a in ARM_OFFSETS],
        "strategy": "er_ucb",
        "budget": 40,
        "rung_steps": 4,
        "search": {"OptimizerConfig": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}}},
        "seed": 1,
    }
    return ml_collections.ConfigDict({**spec, **changes})


def synthetic_bits(trial: sweep_state.Trial) -> float:
    lr = trial.values["OptimizerConfig.learning_rate"]
    return ARM_OFFSETS[trial.arm] + 0.1 * math.log10(lr / 3e-3) ** 2


class Killed(Exception):
    """The sweep process dying in the middle of a trial."""


def write_metrics(workdir: Path, steps: int, bits: float) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"step": steps, "eval_loss": 1.0, "eval_bits_per_byte": bits}
    (workdir / "metrics.jsonl").write_text(json.dumps(record) + "\n")


def test_emitted_waves_step_the_bandit_between_slurm_arrays(tmp_path, capsys):
    spec_path = tmp_path / "spec.py"
    spec_path.write_text(
        f"import ml_collections\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({spec_dict(budget=16).to_dict()!r})\n"
    )
    argv = ["sweep", "run", f"--spec={spec_path}", f"--root={tmp_path}", "--parallel=3"]
    root = tmp_path / "synthetic"
    assert cli.main([*argv, "--emit=slurm"]) == 0
    script = capsys.readouterr().out
    assert "#SBATCH --array=0-2" in script and script.count("--workdir=") == 3
    state = sweep_state.SweepState.from_json((root / sweep_state.STATE_FILE).read_text())
    # The array has not run: emitting again hands back the same wave.
    assert cli.main([*argv, "--emit=commands"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        shlex.join(t.command(root)) for t in state.trials
    ]
    for trial in state.trials:  # what the array tasks would leave behind
        write_metrics(root / trial.workdir, 4, synthetic_bits(trial))
    assert cli.main([*argv, "--emit=slurm"]) == 0
    assert "#SBATCH --array=0-0" in capsys.readouterr().out  # 16 steps: one rung left
    state = sweep_state.SweepState.from_json((root / sweep_state.STATE_FILE).read_text())
    assert [t.status for t in state.trials] == ["done"] * 3 + ["running"]
    write_metrics(root / state.trials[3].workdir, 4, synthetic_bits(state.trials[3]))
    assert cli.main([*argv, "--emit=slurm"]) == 0
    assert "budget spent (16/16 steps)" in capsys.readouterr().out


@pytest.mark.parametrize("spec", sorted(p.name for p in (CONFIGS_DIR / "sweeps").glob("*.py")))
def test_shipped_specs_dry_run(spec, tmp_path, capsys):
    argv = ["sweep", "run", f"--spec=sweeps/{spec}", f"--root={tmp_path}", "--dry_run"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith(sys.executable) for line in lines)
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_specs_at_their_old_path_still_run(tmp_path, capsys):
    argv = ["sweep", "run", f"--root={tmp_path}", "--dry_run"]
    assert cli.main([*argv, "--spec=launch/sweeps/pangu_rounds.py"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # its four arms
    assert cli.main([*argv, "--spec=launch/sweeps/gone.py"]) == 2
    assert "pass --spec=sweeps/NAME.py" in capsys.readouterr().err


TINY = {
    "DataConfig": {
        "dataset": "python_stdlib",
        "max_documents": 60,
        "vocab_size": 512,
        "validation_fraction": 0.05,
    },
    "TrainConfig": {"batch_size": 8, "seq_len": 32, "log_every": 1, "eval_steps": 1},
    "CheckpointConfig": {"async_save": False, "every_steps": 1},
}


def test_real_trial_killed_mid_training_resumes_from_its_checkpoint_and_reports(
    tmp_path, data_dir, capsys
):
    spec = spec_dict(
        name="real",
        params=TINY,
        budget=3,
        rung_steps=3,
        arms=[
            {"name": "one", "params": {"ModelConfig": {"n_layers": 1}}},
            {"name": "two", "params": {"ModelConfig": {"n_layers": 2}}},
        ],
        search={"OptimizerConfig": {"learning_rate": {"log_uniform": [1e-3, 1e-2]}}},
    )
    spec_path = tmp_path / "spec.py"
    spec_path.write_text(
        f"import ml_collections\n\ndef get_config():\n"
        f"    return ml_collections.ConfigDict({spec.to_dict()!r})\n"
    )
    root = tmp_path / "real"

    def killed_after_step_2(trials):
        # The sweep dies while its trial trains: here in-process (cheaper than a subprocess),
        # right after step 2's checkpoint.
        def die(step):
            if step == 2:
                raise Killed

        (trial,) = trials
        with pytest.raises(Killed):
            cli.main(trial.command(root)[3:], train_hooks=TrainHooks(after_save=die))
        raise Killed

    plan, arms = sweep_budget.parse_budgeted(spec), sweep.expand(spec)
    with pytest.raises(Killed):
        sweep_budget.run(root, "real", arms, plan, killed_after_step_2)
    capsys.readouterr()

    assert cli.main(["sweep", "run", f"--spec={spec_path}", f"--root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "trial 0 | arm one (learning_rate=" in out and "budget 3/3 steps" in out
    metrics = (root / "one/t000/metrics.jsonl").read_text().splitlines()
    resumed = [json.loads(line) for line in metrics]
    # Steps 1-2 were logged before the kill and not again: the trial resumed at step 2.
    assert [r["step"] for r in resumed if "loss" in r] == [1, 2, 3]
    state = json.loads((root / sweep_state.STATE_FILE).read_text())
    assert [t["status"] for t in state["trials"]] == ["done"]
    assert state["trials"][0]["bits_per_byte"] == resumed[-1]["eval_bits_per_byte"] > 0

    assert cli.main(["sweep", "report", f"--spec={spec_path}", f"--root={tmp_path}"]) == 0
    report = capsys.readouterr().out
    for figure in ("curves.png", "best.png", "budget.png"):
        assert f"]({figure})" in report
        assert (root / figure).read_bytes().startswith(b"\x89PNG")
    assert json.loads((root / "report.json").read_text())["spent"] == 3
