"""SIGTERM's one policy (`tinylm_jax.parallel.preemption`): at once, deferred over a commit,
noticed between steps by a training loop."""

import os
import signal
import time

import pytest

from tinylm_jax.parallel import preemption


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # the handler runs at the next bytecode; give the signal time to land


def test_sigterm_raises_terminated_at_once_and_the_handler_is_put_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(preemption.Terminated, match="rerun"):
        with preemption.stop_at_once():
            sigterm_self()
            pytest.fail("SIGTERM did not stop the block")
    assert signal.getsignal(signal.SIGTERM) is before
    assert not issubclass(preemption.Terminated, Exception)  # `except Exception` misses it


def test_a_deferred_block_finishes_before_sigterm_stops_the_command():
    done = []
    with pytest.raises(preemption.Terminated):
        with preemption.stop_at_once():
            with preemption.deferred():
                sigterm_self()
                done.append("commit")
            time.sleep(0.05)  # the SIGTERM held back is delivered as the commit ends
            done.append("after")
    assert done == ["commit"]


def test_the_training_watcher_notes_sigterm_and_stops_at_the_next_step():
    with preemption.stop_at_once(), preemption.PreemptionWatcher() as watcher:
        assert not watcher.noticed and not watcher.should_stop(1)
        sigterm_self()
        assert watcher.noticed and watcher.should_stop(2)
