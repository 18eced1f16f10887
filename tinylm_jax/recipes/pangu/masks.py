"""Learnable structured masks (Sheared-LLaMA, arXiv 2310.06694, Sec. 2.1; hard-concrete L0
gates of Louizos et al., arXiv 1712.01312, Sec. 4).

One gate per query head [L, N], FFN neuron [L, F] and hidden channel [D] of the frozen parent.
A gate z = clip(sigmoid((log u - log(1 - u) + log_alpha) / beta) * (r - l) + l, 0, 1), u ~ U(0, 1),
multiplies what its unit writes: a head's o_proj rows, a neuron's down_proj row, a hidden
channel's token_embed column and o_proj / down_proj output columns (so the channel is scaled
all along the residual stream). The expected number of open gates, sum P(z > 0), is pushed to
the child's size by the Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 per layer, in units
(Sheared-LLaMA counts parameters): log_alpha minimizes loss + Lagrangian (Adam), the lambdas
maximize it (Adam ascent), and the target t ramps linearly from the parent's size to the
child's over the first half of the steps. Adam's step size does not depend on the gradient's
scale, so the gates settle where the Lagrangian's slope lambda1 + 2 lambda2 (s - t) changes
sign, lambda1 / (2 lambda2) units from the target: about one unit or less, since both lambdas
grow at similar rates. Deviations relative to the parent's size would scale that gap by the
parent's size (tried: 100 steps stopped 16 hidden channels short of a 64-channel target).
log_alpha starts at 2 (keep probability 0.97) rather than higher, so that a hundred steps can
move it. The child keeps the units with the highest keep probability, so its sizes are the
targets exactly; the report lists the final expected sizes next to them.

`joint=True` is Sheared-LLaMA's own setting (its `l0_module.py` trains the masks and the model
together): the parent's weights take Adam steps on the same masked loss at the weight learning
rate, and the child inherits those weights with the deterministic gates of the kept units,
min(1, max(0, sigmoid(log_alpha) (r - l) + l)) (Louizos et al., Sec. 4), folded in. With the
parent frozen (the default) the child inherits the parent's weights as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.engine.step import token_losses
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.recipes.pangu.importance import weight_importance
from tinylm_jax.recipes.pangu.pruning import Importance

LIMIT_L, LIMIT_R, BETA = -0.1, 1.1, 2.0 / 3.0
LOG_ALPHA_INIT = 2.0
KINDS = ("hidden", "heads", "ffn")


def sample_gates(log_alpha: jax.Array, key: jax.Array) -> jax.Array:
    u = jax.random.uniform(key, log_alpha.shape, minval=1e-6, maxval=1.0 - 1e-6)
    s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + log_alpha) / BETA)
    return jnp.clip(s * (LIMIT_R - LIMIT_L) + LIMIT_L, 0.0, 1.0)


def keep_probability(log_alpha: jax.Array) -> jax.Array:
    """P(z > 0) of each gate."""
    return jax.nn.sigmoid(log_alpha - BETA * np.log(-LIMIT_L / LIMIT_R))


def masked_params(params: dict, gates: dict, cfg: ModelConfig) -> dict:
    """`params` (unrolled) with every unit's output scaled by its gate."""
    z_D = gates["hidden"]
    out = dict(params)
    out["token_embed"] = params["token_embed"] * z_D
    for i in range(cfg.n_layers):
        layer = params[f"layers_{i}"]
        attn, mlp = dict(layer["attn"]), dict(layer["mlp"])
        attn["o_proj"] = attn["o_proj"] * gates["heads"][i][:, None, None] * z_D
        mlp["down_proj"] = mlp["down_proj"] * gates["ffn"][i][:, None] * z_D
        out[f"layers_{i}"] = {**layer, "attn": attn, "mlp": mlp}
    return out


def _sizes(cfg: ModelConfig) -> dict[str, int]:
    return {"hidden": cfg.d_model, "heads": cfg.n_heads, "ffn": cfg.resolved_ffn_dim}


def _init_state(
    cfg: ModelConfig,
    seed: int,
    tx_mask: optax.GradientTransformation,
    tx_lambda: optax.GradientTransformation,
    replicated: jax.sharding.Sharding,
) -> dict:
    """Gates' log_alpha (LOG_ALPHA_INIT plus a little noise), zero Lagrange multipliers
    [2, ...] per kind, and both Adam states, replicated."""
    rng = np.random.default_rng(seed)
    shapes = {
        "hidden": (cfg.d_model,),
        "heads": (cfg.n_layers, cfg.n_heads),
        "ffn": (cfg.n_layers, cfg.resolved_ffn_dim),
    }
    log_alpha = {
        k: jnp.asarray(LOG_ALPHA_INIT + 0.01 * rng.standard_normal(s), jnp.float32)
        for k, s in shapes.items()
    }
    lambdas = {k: jnp.zeros((2,) + s[:-1], jnp.float32) for k, s in shapes.items()}
    return jax.device_put(
        {
            "log_alpha": log_alpha,
            "lambdas": lambdas,
            "opt_mask": tx_mask.init(log_alpha),
            "opt_lambda": tx_lambda.init(lambdas),
        },
        replicated,
    )


def deterministic_gates(log_alpha: dict) -> dict:
    """The hard-concrete gates at test time (no noise), per kind."""
    return {
        k: jnp.clip(jax.nn.sigmoid(v) * (LIMIT_R - LIMIT_L) + LIMIT_L, 0.0, 1.0)
        for k, v in log_alpha.items()
    }


def _mask_step_fn(
    run: Run,
    child: ModelConfig,
    steps: int,
    seed: int,
    tx_mask: optax.GradientTransformation,
    tx_lambda: optax.GradientTransformation,
    tx_weights: optax.GradientTransformation | None = None,
) -> Callable:
    """`(state, params, batch, step) -> (state, params, masked lm loss)`: one Adam step down
    on log_alpha (and, with `tx_weights`, on the params) and up on the lambdas of loss +
    Lagrangian, the target ramping over the first half of `steps`."""
    cfg = run.config.model
    full, target = _sizes(cfg), _sizes(child)
    ramp = max(steps // 2, 1)

    def objective(log_alpha, lambdas, params, batch, step, key):
        keys = dict(zip(KINDS, jax.random.split(key, len(KINDS)), strict=True))
        gates = {k: sample_gates(log_alpha[k], keys[k]) for k in KINDS}
        losses_BL, weights_BL = token_losses(run.model, masked_params(params, gates, cfg), batch)
        lm_loss = jnp.sum(losses_BL * weights_BL) / jnp.maximum(jnp.sum(weights_BL), 1.0)
        progress = jnp.minimum(step / ramp, 1.0)
        penalty = 0.0
        for k in KINDS:
            t = full[k] - (full[k] - target[k]) * progress
            deviation = jnp.sum(keep_probability(log_alpha[k]), axis=-1) - t
            penalty += jnp.sum(lambdas[k][0] * deviation + lambdas[k][1] * deviation**2)
        return lm_loss + penalty, lm_loss

    joint = tx_weights is not None
    argnums = (0, 1, 2) if joint else (0, 1)  # the frozen parent needs no weight gradient

    def mask_step(state, params, batch, step):
        key = jax.random.fold_in(jax.random.key(seed), step)
        grad_fn = jax.value_and_grad(objective, argnums=argnums, has_aux=True)
        (_, lm_loss), grads = grad_fn(
            state["log_alpha"], state["lambdas"], params, batch, step, key
        )
        updates, opt_mask = tx_mask.update(grads[0], state["opt_mask"])
        ascent = jax.tree_util.tree_map(jnp.negative, grads[1])
        lambda_updates, opt_lambda = tx_lambda.update(ascent, state["opt_lambda"])
        new = {
            "log_alpha": optax.apply_updates(state["log_alpha"], updates),
            "lambdas": optax.apply_updates(state["lambdas"], lambda_updates),
            "opt_mask": opt_mask,
            "opt_lambda": opt_lambda,
        }
        if joint:
            weight_updates, new["opt_weights"] = tx_weights.update(
                grads[2], state["opt_weights"], params
            )
            params = optax.apply_updates(params, weight_updates)
        return new, params, lm_loss

    return mask_step


def learn_masks(
    run: Run,
    params: dict,
    batches: Iterator[dict],
    child: ModelConfig,
    steps: int,
    learning_rate: float,
    seed: int,
    weight_learning_rate: float | None = None,
) -> tuple[Importance, dict, dict | None]:
    """Trains the gates of `run`'s (depth-pruned) parent for `steps` batches: parent frozen,
    or (with `weight_learning_rate`) trained jointly.

    Returns the importance (keep probabilities; kv heads own nothing; head_dim is not gated
    and falls back to l2), a report (final expected sizes against the targets) and, when
    joint, the trained weights with the deterministic gates folded in (host arrays).
    """
    cfg = run.config.model
    replicated = rules_lib.replicated(run.mesh)
    tx_mask, tx_lambda = optax.adam(learning_rate), optax.adam(learning_rate)
    tx_weights = None if weight_learning_rate is None else optax.adam(weight_learning_rate)
    state = _init_state(cfg, seed, tx_mask, tx_lambda, replicated)
    if tx_weights is not None:
        state["opt_weights"] = jax.jit(tx_weights.init, out_shardings=None)(params)
    mask_step = _mask_step_fn(run, child, steps, seed, tx_mask, tx_lambda, tx_weights)
    param_shardings = run.shardings.params
    step_fn = jax.jit(
        mask_step, out_shardings=(None, param_shardings, replicated), donate_argnums=0
    )
    losses = []
    with run_context(run):
        for step in range(steps):
            state, params, lm_loss = step_fn(state, params, next(batches), jnp.int32(step))
            losses.append(lm_loss)
    log_alpha = {
        k: np.asarray(jax.device_get(v), np.float64) for k, v in state["log_alpha"].items()
    }
    # In float64: saturated float32 probabilities would tie.
    shift = BETA * np.log(-LIMIT_L / LIMIT_R)
    keep = {k: 1.0 / (1.0 + np.exp(shift - v)) for k, v in log_alpha.items()}
    report = {
        "target_sizes": _sizes(child),
        "expected_sizes": {k: np.sum(v, axis=-1).round(3).tolist() for k, v in keep.items()},
        "masked_loss_first_last": [float(losses[0]), float(losses[-1])],
    }
    importance = Importance(
        hidden=keep["hidden"],
        heads=keep["heads"],
        kv_heads=np.zeros((cfg.n_layers, cfg.resolved_n_kv_heads)),
        ffn=keep["ffn"],
        head_dim=weight_importance(run, params, "l2").head_dim,
    )
    if tx_weights is None:
        return importance, report, None
    with run_context(run):
        gated = masked_params(params, deterministic_gates(state["log_alpha"]), cfg)
    return importance, report, jax.device_get(gated)
