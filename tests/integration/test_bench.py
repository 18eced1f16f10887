"""`tinylm bench` (its JSON contract, on a sharded mesh and for every named config that fits
this host) and the PyTorch peer comparison run end to end."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gin
import pytest

from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib

REPO = Path(__file__).resolve().parents[2]
CONTRACT_KEYS = ("tokens_per_second", "mfu", "step_time_s", "compile_s", "peak_memory_bytes")
SMALL_BATCH = ["TrainConfig.batch_size = 8", "TrainConfig.seq_len = 32"]
# Named configs whose params + AdamW state exceed this are compiled (`--compile_only`: shapes,
# shardings and XLA's memory plan, nothing allocated) instead of stepped, to keep the suite's
# time on 2 cores: stepping a 30M+ config takes 20-45 s, compiling even a 1.5B one ~6 s.
CI_STATE_BUDGET_BYTES = 128 * 1024**2


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def run_bench(capsys, gin_file: str, params: list[str], steps: int = 2) -> dict:
    args = ["bench", f"--gin_file={gin_file}", f"--steps={steps}", "--warmup_steps=1"]
    assert cli.main(args + [f"--gin_param={p}" for p in params]) == 0
    return last_json(capsys.readouterr().out)


def test_bench_json_contract_on_a_sharded_mesh(capsys, gin_clean):
    mesh = ["MeshConfig.data = 2", "MeshConfig.fsdp = 2", "MeshConfig.tensor = 2"]
    result = run_bench(capsys, "models/tiny_test.gin", SMALL_BATCH + mesh, steps=3)
    for key in CONTRACT_KEYS:
        assert result[key] is not None and result[key] > 0, key
    assert result["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
    assert result["num_devices"] == 8 and result["platform"] == "cpu"
    assert result["tokens_per_step"] == 8 * 32 and result["steps"] == 3
    # The mean step time is the timed tokens over the throughput, not a separate clock.
    assert result["step_time_s"] == pytest.approx(
        result["tokens_per_step"] / result["tokens_per_second"]
    )
    assert result["step_time_p50_s"] <= result["step_time_p90_s"]
    assert result["mfu"] == pytest.approx(
        result["flops_per_token"]
        * result["tokens_per_second"]
        / (result["peak_flops_per_device"] * result["num_devices"])
    )
    assert math.isfinite(result["final_loss"])
    assert result["compiled_memory"]["total_bytes"] > 0


def test_compile_only_plans_memory_without_allocating_the_state(capsys, gin_clean, monkeypatch):
    from tinylm_jax.train import bench

    def fail(*args, **kwargs):
        raise AssertionError("--compile_only allocated the train state")

    monkeypatch.setattr(bench, "init_state", fail)
    params = SMALL_BATCH + ["MeshConfig.data = 2", "MeshConfig.fsdp = 4"]
    params.append("ModelConfig.loss_chunk_tokens = 64")
    args = ["bench", "--compile_only", "--gin_file=models/tiny_test.gin"]
    assert cli.main(args + [f"--gin_param={p}" for p in params]) == 0
    out = capsys.readouterr().out
    plan = last_json(out)
    sizes = plan["compiled_memory"]
    assert "memory plan per device, GiB" in out and sizes["temp_bytes"] > 0
    assert sizes["argument_bytes"] > 0 and sizes["alias_bytes"] > 0  # the donated state
    assert plan["peak_memory_bytes"] == 8 * sizes["total_bytes"]
    assert plan["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1} and plan["loss_chunk_tokens"] == 64
    assert plan["params"] > 0 and "tokens_per_second" not in plan


def named_model_configs() -> list[str]:
    return sorted(p.name for p in (config_lib.CONFIGS_DIR / "models").glob("*.gin"))


@pytest.mark.parametrize("name", named_model_configs())
def test_every_named_config_steps_or_compiles(name, capsys, gin_clean):
    from tinylm_jax.model.counting import model_stats

    stats = model_stats(config_lib.parse([f"models/{name}"], []).model)
    gin.clear_config()
    fsdp = ["MeshConfig.data = 1", "MeshConfig.fsdp = -1"]  # 8 devices share, not replicate
    if stats.train_state_bytes > CI_STATE_BUDGET_BYTES:
        args = ["bench", "--compile_only", f"--gin_file=models/{name}"]
        assert cli.main(args + [f"--gin_param={p}" for p in SMALL_BATCH + fsdp]) == 0
        plan = last_json(capsys.readouterr().out)
        assert plan["params"] == stats.total_params and plan["mesh"]["fsdp"] == 8
        # The state is sharded over the 8 devices (small tensors stay replicated), not copied.
        assert plan["compiled_memory"]["argument_bytes"] < stats.train_state_bytes / 2
        return
    result = run_bench(capsys, f"models/{name}", SMALL_BATCH + fsdp, steps=1)
    assert result["params"] == stats.total_params
    assert result["tokens_per_second"] > 0 and math.isfinite(result["final_loss"])


def test_bench_rejects_bad_step_counts(capsys, gin_clean):
    assert cli.main(["bench", "--gin_file=models/tiny_test.gin", "--steps=0"]) == 2
    assert "--steps >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_peer_comparison_runs_end_to_end_and_prints_its_ratio():
    params = SMALL_BATCH + ["TrainConfig.num_steps = 10"]
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "compare_peer.py"),
        "--gin_file=models/tiny_test.gin",
        *[f"--gin_param={p}" for p in params],
        "--rounds=2",
        "--steps=2",
        "--warmup_steps=1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert "ratio" in proc.stdout.splitlines()[-2]
    assert summary["params"] == summary["peer_params"]  # the same model on both sides
    assert len(summary["tinylm_runs"]) == len(summary["peer_runs"]) == 2
    assert summary["ratio"] == pytest.approx(
        summary["tinylm_tokens_per_second"] / summary["peer_tokens_per_second"]
    )
    assert summary["peer"]["transformers"] and summary["batch_size"] == 8
