"""`--profile_steps=A:B`: parsing, and the train-loop hook that writes a TensorBoard trace."""

import jax
import jax.numpy as jnp
import pytest

from tinylm_jax.errors import ConfigError
from tinylm_jax.train.hooks import StepInfo
from tinylm_jax.train.profile import parse_steps, profile_hook


def test_parse_steps():
    assert parse_steps(None) is None and parse_steps("") is None
    assert parse_steps("0:3") == (0, 3)
    for bad in ("3", "3:3", "4:2", "a:b", "-1:2"):
        with pytest.raises(ConfigError, match="expected A:B"):
            parse_steps(bad)


def test_the_hook_traces_steps_a_plus_1_to_b_into_the_log_dir(tmp_path):
    hook = profile_hook((1, 3), str(tmp_path))
    step = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((64, 64))
    paused = []
    for i in range(1, 5):
        x = step(x)
        info = hook(StepInfo(i, None, {"loss": x.sum()}))  # type: ignore[arg-type]
        paused.append(info.paused)
    assert paused == [False, False, True, False]  # the step that stops the trace pauses timing
    traces = list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
