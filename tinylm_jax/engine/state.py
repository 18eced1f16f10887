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
    """Step 0 with `params` and a freshly initialized optimizer state.

    The optimizer sees plain arrays; when `params` carry logical-axis boxes, each state leaf
    shaped like a parameter (Adam's moments, Lion's momentum) takes that parameter's box, and
    the rest (Adafactor's factored rows/columns, counts) stay plain, i.e. replicated.
    """
    plain = nn.unbox(params)
    opt_state = tx.init(plain)
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)  # noqa: E731
    if any(is_box(leaf) for leaf in jax.tree_util.tree_leaves(params, is_leaf=is_box)):
        opt_state = optax.tree_map_params(
            tx,
            _box_like,
            opt_state,
            params,
            # optax.partition leaves MaskedNode where another optimizer owns the parameter.
            is_leaf=lambda x: is_box(x) or isinstance(x, optax.MaskedNode),
        )
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


def _box_like(value, param):
    """`value` in `param`'s logical-axis box when it has the parameter's shape."""
    shape = getattr(value, "shape", None)  # None for optax.MaskedNode
    if isinstance(param, nn.meta.AxisMetadata) and shape == param.value.shape:
        return param.replace_boxed(value)
    return value


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
