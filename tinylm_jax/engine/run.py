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
import numpy as np
import optax

from tinylm_jax.config.mesh import Rules
from tinylm_jax.config.run import RunConfig
from tinylm_jax.engine.optimizer import make_optimizer
from tinylm_jax.engine.state import TrainState, abstract_state, make_init_fn
from tinylm_jax.engine.step import eval_step, score_step, train_step
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.byte_level import TokenBytes
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.parallel.batch import to_global
from tinylm_jax.parallel.mesh import make_mesh

HostBatch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything a step needs. The steps are jitted once here and reused for every call:
    `train_step(state, batch) -> (state, metrics)`, `eval_step(params, batch, byte_lengths_V)
    -> sums`, `score_step(params, batch) -> [B] summed target log-likelihoods`.
    `prepare_batch`, when set, adds what the eval and score steps need beyond the packed
    arrays to a process's host batch (a delta of another vocabulary: its tokenization)."""

    config: RunConfig
    mesh: jax.sharding.Mesh
    model: Transformer
    init_fn: Callable[[jax.Array], TrainState]
    abstract: TrainState
    shardings: TrainState
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: jax.stages.Wrapped  # jitted: `.lower()` compiles it ahead of time
    eval_step: Callable
    score_step: Callable
    prepare_batch: Callable[[HostBatch], HostBatch] | None = None

    @property
    def rules(self) -> Rules:
        return self.config.rules

    def eval_batch(self, host_batch: HostBatch) -> dict[str, jax.Array]:
        """A process's rows of an eval or score batch (after `prepare_batch`), as one global
        batch on the mesh."""
        if self.prepare_batch is not None:
            host_batch = self.prepare_batch(host_batch)
        return to_global(host_batch, self.mesh, self.rules)


def build_run(config: RunConfig, token_bytes: TokenBytes | None = None) -> Run:
    """Builds model, optimizer, mesh and the jitted steps; checks shardability first.

    `token_bytes`: the run's token byte table (`data.token_bytes.token_bytes_for`), needed
    exactly when the model reads or predicts bytes (`ModelConfig.uses_bytes`).
    """
    tc, mc = config.train, config.model
    if mc.uses_bytes != (token_bytes is not None):
        raise ConfigError(
            f"ModelConfig.input_embedding={mc.input_embedding!r}, output_head={mc.output_head!r}"
            f": a token byte table is {'needed' if mc.uses_bytes else 'not used'} but was "
            f"{'not ' if token_bytes is None else ''}given to build_run"
        )
    if token_bytes is not None and token_bytes.table_VT.shape != (
        mc.vocab_size,
        mc.max_token_bytes,
    ):
        raise ConfigError(
            f"the token byte table has shape {token_bytes.table_VT.shape}, but the model needs "
            f"({mc.vocab_size}, {mc.max_token_bytes}) (ModelConfig.vocab_size, max_token_bytes); "
            "rebuild it from the run's tokenizer with this config"
        )
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
    model = Transformer(mc, token_bytes=token_bytes)
    rounds = config.rounds.steps_per_round(tc.num_steps) if config.rounds.restart_schedule else None
    tx, schedule = make_optimizer(config.optimizer, tc.num_steps, rounds)
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
def mesh_context(mesh: jax.sharding.Mesh, rules: Rules):
    """The mesh and logical-axis rules that tracing the model's sharding constraints needs."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def run_context(run: Run):
    return mesh_context(run.mesh, run.rules)
