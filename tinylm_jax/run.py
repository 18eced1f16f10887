"""A compiled run: mesh, model, optimizer and the jitted steps, built once from a RunConfig.

Shared by training, evaluation, sampling, scoring and the benchmark, so every one of them
runs the same model on the same mesh with the same shardings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import optax

from tinylm_jax.config import RunConfig
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.mesh import make_mesh
from tinylm_jax.train.optimizer import make_optimizer
from tinylm_jax.train.state import TrainState, abstract_state, make_init_fn
from tinylm_jax.train.step import eval_step, score_step, train_step


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a step needs. The steps are jitted once here and reused for every call:
    `train_step(state, batch) -> (state, metrics)`, `eval_step(params, batch, byte_lengths_V)
    -> sums`, `score_step(params, batch) -> [B] summed target log-likelihoods`."""

    config: RunConfig
    mesh: jax.sharding.Mesh
    model: Transformer
    init_fn: Callable[[jax.Array], TrainState]
    abstract: TrainState
    shardings: TrainState
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: Callable
    eval_step: Callable
    score_step: Callable

    @property
    def rules(self) -> rules_lib.Rules:
        return self.config.rules


def build_run(config: RunConfig) -> Run:
    """Builds model, optimizer, mesh and the jitted steps; checks shardability first."""
    tc = config.train
    mesh = make_mesh(config.mesh)
    rules_lib.check_batch_divisible(
        tc.batch_size // tc.microbatches,
        mesh,
        config.rules,
        "TrainConfig.batch_size / microbatches",
    )
    rules_lib.check_batch_divisible(
        tc.resolved_eval_batch_size, mesh, config.rules, "TrainConfig.eval_batch_size"
    )
    model = Transformer(config.model)
    tx, schedule = make_optimizer(config.optimizer, tc.num_steps)
    init_fn = make_init_fn(model, tx, tc.seq_len)
    abstract, shardings = abstract_state(init_fn, mesh, config.rules)
    batch_shardings = rules_lib.batch_sharding(mesh, config.rules)
    replicated = rules_lib.replicated(mesh)
    step = functools.partial(
        train_step, model=model, tx=tx, schedule=schedule, microbatches=tc.microbatches
    )
    return Run(
        config=config,
        mesh=mesh,
        model=model,
        init_fn=init_fn,
        abstract=abstract,
        shardings=shardings,
        tx=tx,
        schedule=schedule,
        train_step=jax.jit(
            step,
            in_shardings=(shardings, batch_shardings),
            out_shardings=(shardings, replicated),
            donate_argnums=0,
        ),
        eval_step=jax.jit(functools.partial(eval_step, model=model), out_shardings=replicated),
        score_step=jax.jit(functools.partial(score_step, model=model), out_shardings=replicated),
    )


@contextlib.contextmanager
def mesh_context(mesh: jax.sharding.Mesh, rules: rules_lib.Rules):
    """The mesh and logical-axis rules that tracing the model's sharding constraints needs."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def run_context(run: Run):
    return mesh_context(run.mesh, run.rules)
