"""Train state and its sharded initialization."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from tinylm_jax.parallel import rules as rules_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: dict
    opt_state: optax.OptState
    rng: jax.Array  # uint32 key data, kept so resumed runs draw the same randomness


def make_init_fn(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seq_len: int,
) -> Callable[[jax.Array], TrainState]:
    """Returns rng -> TrainState whose params (and Adam moments) carry logical-axis boxes."""

    def init(rng: jax.Array) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        tokens = jnp.zeros((1, seq_len), jnp.int32)
        params = model.init(init_rng, tokens)["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=jax.random.key_data(state_rng),
        )

    return init


def abstract_state(
    init_fn: Callable,
    mesh: Mesh,
    rules: rules_lib.Rules,
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
