"""Train state and its sharded initialization."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from tinylm_jax.config.mesh import Rules
from tinylm_jax.parallel import rules as rules_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: dict
    opt_state: optax.OptState


def make_init_fn(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seq_len: int,
) -> Callable[[jax.Array], TrainState]:
    """Returns rng -> TrainState whose params (and Adam moments) carry logical-axis boxes."""

    def init(rng: jax.Array) -> TrainState:
        params = model.init(rng, jnp.zeros((1, seq_len), jnp.int32))["params"]
        return fresh_state(params, tx)

    return init


def fresh_state(params: dict, tx: optax.GradientTransformation) -> TrainState:
    """Step 0 with `params` and a freshly initialized optimizer state."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def abstract_state(
    init_fn: Callable,
    mesh: Mesh,
    rules: Rules,
) -> tuple[TrainState, TrainState]:
    """(unboxed abstract state, its NamedShardings); checks every sharded dim divides."""
    boxed = jax.eval_shape(init_fn, jax.random.key(0))
    rules_lib.check_divisible(boxed, mesh, rules)
    shardings = rules_lib.shardings_for(boxed, mesh, rules)
    return nn.unbox(boxed), shardings


def init_state(init_fn: Callable, seed: int, shardings: TrainState) -> TrainState:
    """Allocates the state directly in its sharded layout (no host-side copy)."""
    return jax.jit(lambda rng: nn.unbox(init_fn(rng)), out_shardings=shardings)(
        jax.random.key(seed)
    )


def state_from_params(
    params: dict, tx: optax.GradientTransformation, shardings: TrainState
) -> TrainState:
    """A step-0 state around given params (imported, inherited) laid out on `shardings`.

    Cheaper than `init_state` + replacing params: only the optimizer state is computed.
    """
    params = jax.device_put(params, shardings.params)
    return jax.jit(lambda p: fresh_state(p, tx), out_shardings=shardings)(params)
