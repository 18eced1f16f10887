"""benchmarks/device_check.sh: its plan on CPU (--dry_run), and the table it ends with."""

import importlib.util
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "device_check.sh"


def test_dry_run_prints_every_step_and_runs_nothing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DEVICE_CHECK_OUT": str(tmp_path), "PYTHON": "python"}
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry_run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    for model in ("demo", "125m", "tinyllama"):
        for kind in ("plan", "train", "peer"):
            assert f"{kind}_{model} " in plan
    assert "bench --compile_only" in plan and "--device=cuda --bf16" in plan
    assert "attention_2048" in plan and "attention_8192" in plan and "--cudnn" in plan
    assert "decode_tinyllama_b8" in plan and "peer_decode_tinyllama_b1" in plan
    # Shell-quoted, so a line can be pasted to run one step alone.
    assert r"--gin_param=ModelConfig.dtype\ =\ \'bfloat16\'" in plan
    assert r"TrainConfig.seq_len\ =\ 2048" in plan
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_a_bad_argument_exits_2():
    proc = subprocess.run(["bash", str(SCRIPT), "--now"], capture_output=True, text=True)
    assert proc.returncode == 2 and "only --dry_run" in proc.stderr


def test_the_table_has_a_row_per_check_and_marks_failures(tmp_path):
    spec = importlib.util.spec_from_file_location("device_table", SCRIPT.parent / "device_table.py")
    device_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_table)
    train = {
        "tokens_per_second": 1000.0,
        "peak_flops_per_device": 1e12,
        "num_devices": 1,
        "flops_per_token": 6e8,
        "mfu": 0.6,
        "params": 5e6,
        "batch_size": 32,
        "seq_len": 2048,
        "step_time_s": 0.1,
        "peak_memory_bytes": 2**30,
        "compile_s": 3.0,
        "device_kind": "NVIDIA H100 80GB HBM3",
    }
    records = {
        "train_demo": train,
        "plan_demo": {"peak_memory_bytes": 2**31},
        "peer_demo": {"tokens_per_second": 500.0, "peak_memory_bytes": 2**30},
        "train_tinyllama": {"failed": 137},
        "attention_2048": {"points": [{"batch_size": 8, "median_s": {"xla": 2e-3, "cudnn": 1e-3}}]},
    }
    for name, record in records.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    text = device_table.table(tmp_path)
    assert text.startswith("device: NVIDIA H100 80GB HBM3")
    demo = next(line for line in text.splitlines() if line.startswith("| train demo"))
    assert "MFU 60.0%" in demo and "plan 2.0 GiB" in demo and "| 2.00x |" in demo
    assert "MFU 30.0%" in demo  # the peer's, with tinylm's FLOPs per token and peak
    assert "failed (137" in text and "fastest cudnn" in text
    assert "decode demo b1 | failed (missing" in text
