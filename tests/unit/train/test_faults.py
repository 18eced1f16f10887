"""The messages and policies of `tinylm_jax.train.faults` and `tinylm_jax.train.rollback`."""

import pytest

from tinylm_jax.config.train import TrainConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.train import faults
from tinylm_jax.train.metrics import NonFiniteError
from tinylm_jax.train.rollback import Rollbacks


def test_a_lost_peer_names_the_process_the_step_and_the_last_good_checkpoint(tmp_path):
    for step in (2, 4):
        (tmp_path / str(step)).mkdir()
    (tmp_path / "6.orbax-checkpoint-tmp-1").mkdir()  # an unfinished save is not a checkpoint
    cause = RuntimeError(
        "UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:jax_worker/replica:0/task:1"
    )
    message = str(faults.PeerLost(7, tmp_path, cause))
    assert message.startswith("lost a peer: process 1 of the 1 stopped answering")
    assert "stopped at step 7" in message and f"step 4 in {tmp_path}" in message
    assert "exit code 75" in message and "Relaunch the same command" in message
    assert "another process" in str(faults.PeerLost(3, tmp_path / "none", RuntimeError("x")))


def test_one_process_never_reports_a_lost_peer():
    assert not faults.is_peer_loss(TimeoutError("Timed out while waiting for barrier"))


def test_rollbacks_skip_more_on_a_repeat_and_are_bounded():
    policy = Rollbacks(TrainConfig(on_nonfinite="rollback", rollback_skip_batches=5))
    policy.restore({"history": [{"restored_step": 2}]}, None)  # one before the resumed step
    spike = NonFiniteError("nan", bad_step=9, step=10)
    assert policy.allows(spike)
    assert policy.record(spike, 8).skipped_batches == 5
    policy.restore({"history": [{"restored_step": 2}]}, None)  # the checkpoint at 8
    assert policy.record(spike, 8).skipped_batches == 10  # the same spike again: skip more
    assert policy.count == 3 and not policy.allows(spike)  # max_rollbacks = 3
    assert not Rollbacks(TrainConfig()).allows(spike)  # 'stop'


def test_bad_fault_settings_are_config_errors():
    with pytest.raises(ConfigError, match="on_nonfinite must be 'stop' or 'rollback'"):
        TrainConfig(on_nonfinite="skip")
    with pytest.raises(ConfigError, match="rollback_skip_batches"):
        TrainConfig(rollback_skip_batches=-1)
