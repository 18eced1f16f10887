"""`tinylm cmc train` in 2 local processes x 2 CPU devices (`jax.distributed` on 127.0.0.1)
matches 1 process x 4 devices: the same delta params and losses within float tolerance."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers import free_port, xla_flags
from tests.support.cmc import DELTA, bpe_tokenizer, write_model, write_records
from tinylm_jax.engine import checkpoint as ckpt

FLAGS = [
    f"--gin_param={p}"
    for p in DELTA
    + [
        "TrainConfig.num_steps = 4",
        "CheckpointConfig.every_steps = 4",
        "MeshConfig.num_devices = None",
    ]
]
DEADLINE_S = 600


def cmc_train(
    template: Path, data: Path, workdir: Path, devices: int, extra=()
) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla_flags(devices),
    }
    args = ["cmc", "train", f"--template={template}", f"--workdir={workdir}", f"--data={data}"]
    return subprocess.Popen(
        [sys.executable, "-m", "tinylm_jax.cli", *args, *FLAGS, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def losses(workdir: Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    template = write_model(tmp_path / "template", bpe_tokenizer(tmp_path / "tok"))
    data = write_records(tmp_path / "data.jsonl")
    one = cmc_train(template, data, tmp_path / "one", 4)
    out, _ = one.communicate(timeout=DEADLINE_S)
    assert one.returncode == 0, out[-3000:]
    port = free_port()
    procs = [
        cmc_train(
            template,
            data,
            tmp_path / "two",
            2,
            [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        )
        for i in range(2)
    ]
    outputs = [proc.communicate(timeout=DEADLINE_S)[0] for proc in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    # One run of two processes: only process 0 reports and writes.
    assert ["cmc: training the delta" in out for out in outputs] == [True, False]
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
    two, _ = ckpt.load_params(tmp_path / "two", 4)
    single, _ = ckpt.load_params(tmp_path / "one", 4)
    for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
