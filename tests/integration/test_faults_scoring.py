"""Fault battery, the 8-device scoring hang: a two-round run on 8 virtual CPU devices whose
scoring pass covers tens of thousands of sequences finishes.

It used to abort after 40 s in an XLA:CPU all-gather rendezvous ("only 7 of them arrived"): the
pass dispatched every batch without waiting, XLA:CPU blocked the launches past its 32 in-flight
computations per device inside its client thread pool (8 threads here: one per device), and the
all-gather ahead of them never got its 8th thread. See `tinylm_jax.parallel.dispatch`. The
first test runs that pattern bare (it aborts without `DispatchWindow`: run it with
`DispatchWindow(10**9)` to see); the second a real scoring pass of that size (its tiny model
keeps the host the bottleneck, so it passed on the old code too: it guards the pass at scale).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import TINY_DATA, xla_flags

# Two collective programs per iteration whose device time exceeds the host's dispatch time.
PATTERN = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tinylm_jax.parallel.dispatch import DispatchWindow
mesh = Mesh(np.array(jax.devices()), ("d",))
rows, replicated = NamedSharding(mesh, P("d")), NamedSharding(mesh, P())
w = jax.device_put(np.full((512, 2048), 0.01, np.float32), replicated)
score = jax.jit(lambda x: jnp.tanh(jnp.tanh(x @ w) @ w.T).sum(axis=1), out_shardings=replicated)
ids = jax.jit(lambda x: x + 1, out_shardings=replicated)
window, outputs = DispatchWindow(), []
for i in range(300):
    batch = jax.device_put(np.full((2048, 512), i, np.float32), rows)
    outputs.append((score(batch), ids(batch[:, 0])))
    window.push(outputs[-1])
print("scored", len(jax.device_get(outputs)))
"""


@pytest.mark.slow
def test_many_collective_batches_in_a_row_finish_on_8_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = xla_flags(8)
    proc = subprocess.run(
        [sys.executable, "-c", PATTERN], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and "scored 300" in proc.stdout, proc.stderr[-3000:]


FLAGS = [
    "--gin_file=models/tiny_test.gin",
    *(
        f"--gin_param={p}"
        for p in TINY_DATA
        + [
            "DataConfig.max_documents = 300",
            "TrainConfig.num_steps = 2",
            "TrainConfig.batch_size = 8",
            "TrainConfig.seq_len = 16",
            "TrainConfig.eval_steps = 0",
            "TrainConfig.log_every = 1",
            "RoundsConfig.num_rounds = 2",
            "RoundsConfig.score_batch_size = 64",
            "CheckpointConfig.async_save = False",
        ]
    ),
]


@pytest.mark.slow
def test_a_two_round_run_on_8_devices_scores_tens_of_thousands_of_sequences(tmp_path, data_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = xla_flags(8)
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tinylm_jax.cli", "train", f"--workdir={workdir}", *FLAGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "on 8 device(s)" in proc.stdout
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    (scoring,) = [r for r in records if "units_scored" in r]
    assert scoring["units_scored"] >= 20_000, scoring
    assert {r["step"] for r in records if "loss" in r} == {1, 2}
