"""The trainer's parts, each on its own: throughput, the finite guard, schedules of eval and
save, log lines, data checks before the first step, data seed, eval compiled once."""

import time

import jax.numpy as jnp
import pytest

from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import CheckpointConfig, TrainConfig
from tinylm_jax.engine.run import build_run
from tinylm_jax.train import loop
from tinylm_jax.train import metrics as metrics_lib


def test_throughput_counts_tokens_over_the_steps_since_reset():
    throughput = metrics_lib.Throughput(tokens_per_step=1000)
    throughput.reset()
    for _ in range(4):
        throughput.add_step()
    time.sleep(0.05)
    assert throughput.steps == 4
    assert 0.0125 <= throughput.step_time() < 1.0
    assert throughput.tokens_per_second() == pytest.approx(1000 / throughput.step_time(), rel=0.05)
    throughput.reset()
    assert throughput.steps == 0


class FakeManager:
    directory = "/ckpt"

    def __init__(self):
        self.waited = 0

    def wait_until_finished(self):
        self.waited += 1


def test_finite_guard_reports_the_first_bad_step_and_bad_params(gin_clean):
    run = build_run(
        RunConfig(
            model=RunConfig().model.replace(
                vocab_size=64, d_model=16, n_layers=1, n_heads=2, ffn_dim=32
            ),
            train=TrainConfig(batch_size=8, seq_len=8),
        )
    )
    guard, manager = metrics_lib.FiniteGuard(run), FakeManager()
    guard.update(1, {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0)})
    guard.check(1, None, manager)  # all finite: no error
    guard.update(2, {"loss": jnp.float32(jnp.nan), "grad_norm": jnp.float32(1.0)})
    guard.update(3, {"loss": jnp.float32(jnp.inf), "grad_norm": jnp.float32(1.0)})
    with pytest.raises(FloatingPointError, match=r"at step 2 \(detected at step 3\).*step 1"):
        guard.check(3, 1, manager)
    assert manager.waited == 1
    fresh = metrics_lib.FiniteGuard(run)
    with pytest.raises(FloatingPointError, match="at step 5"):
        fresh.check(5, None, manager, params={"w": jnp.array([1.0, jnp.nan])})


def test_eval_and_save_schedules():
    tc = TrainConfig(num_steps=10, eval_every=4, eval_steps=2)
    assert [s for s in range(1, 11) if loop.is_eval_step(s, tc)] == [4, 8]
    assert not any(loop.is_eval_step(s, TrainConfig(num_steps=10, eval_steps=2)) for s in range(11))
    config = RunConfig(train=tc, checkpoint=CheckpointConfig(every_steps=3))
    assert [s for s in range(1, 11) if loop.is_save_step(s, config)] == [3, 6, 9, 10]


def test_log_lines_and_records():
    throughput = metrics_lib.Throughput(tokens_per_step=100)
    throughput.add_step()
    metrics = {"loss": 2.5, "grad_norm": 0.5, "learning_rate": 1e-3, "tokens": 100.0}
    record = metrics_lib.step_record(metrics, throughput, flops_per_token_=6.0, peak_flops=1e6)
    assert "tokens" not in record and record["loss"] == 2.5
    assert record["mfu"] == pytest.approx(6.0 * record["tokens_per_second"] / 1e6)
    line = metrics_lib.step_line(record, 3, 10)
    assert line.startswith("step 3/10 | loss 2.5000 | lr 1.00e-03") and "ETA" in line
    result = {"eval_loss": 1.0, "eval_perplexity": 2.718, "eval_bits_per_byte": 0.5}
    assert metrics_lib.eval_line(result, 7) == (
        "eval step 7 | loss 1.0000 | ppl 2.72 | bits/byte 0.5000"
    )
