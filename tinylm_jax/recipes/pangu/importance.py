"""Importance of a parent's width units and layers, computed jitted on the run's mesh.

A unit (hidden channel, query head, kv head, FFN neuron, head_dim channel) owns the weights
listed in `recipe/pruning.py`; a weight metric sums an element-wise score over them:
  l1        sum |w|,  l2  sum w^2 (the squared norm ranks like the norm and adds over groups);
  taylor    sum over the unit's weight matrices of |sum w * dL/dw| within each matrix, the
            gradient summed over calibration batches (LLM-Pruner's first-order vector-wise
            importance per parameter of a coupled group, arXiv 2305.11627, Sec. 3.2);
  taylor_pooled  |sum w * dL/dw| over all of the unit's weights at once (this project's
            earlier rule, kept as a variant: terms of different matrices can cancel);
  activation  Minitron's mean absolute activation (arXiv 2407.14679, Sec. 2.2): FFN neurons
            at the down-projection input, heads at the o-projection input (L2 over head_dim),
            hidden channels at the output of every RMSNorm; kv heads own nothing (a group
            counts through its query heads) and head_dim channels fall back to l2;
  random    seeded uniform scores.
Block influence (ShortGPT, arXiv 2403.03853, Sec. 3.1) of layer i is the token mean of
1 - cos(h_in, h_out).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.engine.step import token_losses
from tinylm_jax.model.layers import Block, RMSNorm
from tinylm_jax.recipes.pangu.pruning import Importance

Batch = dict[str, jax.Array]


def unit_sums(score: dict, cfg: ModelConfig, per_matrix: bool = False) -> dict[str, jax.Array]:
    """Sums of an element-wise score tree (the param tree's layout, unrolled) per unit: signed
    over all of a unit's weights, or (`per_matrix`) the |sum| over its slice of each weight
    matrix, added up, so terms of different matrices cannot cancel (LLM-Pruner)."""
    m = jnp.abs if per_matrix else (lambda x: x)
    hidden = m(score["token_embed"].sum(0)) + m(score["final_norm"]["scale"])
    if "lm_head" in score:
        hidden = hidden + m(score["lm_head"].sum(1))
    heads, kv, ffn, head_dim = [], [], [], []
    for i in range(cfg.n_layers):
        layer = score[f"layers_{i}"]
        attn, mlp = layer["attn"], layer["mlp"]
        q_DNH, k_DKH, v_DKH, o_NHD = (attn[k] for k in ("q_proj", "k_proj", "v_proj", "o_proj"))
        in_DF = [mlp[k] for k in ("up_proj", "gate_proj") if k in mlp]
        down_FD = mlp["down_proj"]
        hidden = hidden + m(layer["attn_norm"]["scale"]) + m(layer["mlp_norm"]["scale"])
        hidden = hidden + sum(m(w.sum((1, 2))) for w in (q_DNH, k_DKH, v_DKH))
        hidden = hidden + m(o_NHD.sum((0, 1))) + sum(m(w.sum(1)) for w in in_DF)
        hidden = hidden + m(down_FD.sum(0))
        heads.append(m(q_DNH.sum((0, 2))) + m(o_NHD.sum((1, 2))))
        kv.append(m(k_DKH.sum((0, 2))) + m(v_DKH.sum((0, 2))))
        ffn.append(sum(m(w.sum(0)) for w in in_DF) + m(down_FD.sum(1)))
        head_dim.append(
            m(q_DNH.sum((0, 1)))
            + sum(m(w.sum((0, 1))) for w in (k_DKH, v_DKH))
            + m(o_NHD.sum((0, 2)))
        )
    return {
        "hidden": hidden,
        "heads": jnp.stack(heads),
        "kv_heads": jnp.stack(kv),
        "ffn": jnp.stack(ffn),
        "head_dim": jnp.stack(head_dim),
    }


def _to_importance(sums: dict) -> Importance:
    return Importance(
        **{k: np.abs(np.asarray(jax.device_get(v), np.float64)) for k, v in sums.items()}
    )


def weight_importance(run: Run, params: dict, metric: str, grads: dict | None = None) -> Importance:
    """l1, l2 or (with `grads`) taylor / taylor_pooled importance of `params` (unrolled, on
    the run's mesh)."""
    cfg = run.config.model
    elementwise = {
        "l1": lambda w, g: jnp.abs(w),
        "l2": lambda w, g: jnp.square(w),
        "taylor": lambda w, g: w * g,
        "taylor_pooled": lambda w, g: w * g,
    }[metric]

    def fn(params, grads):
        f32 = lambda t: jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), t)  # noqa: E731
        score = jax.tree_util.tree_map(elementwise, f32(params), f32(grads))
        return unit_sums(score, cfg, per_matrix=metric == "taylor")

    with run_context(run):
        return _to_importance(jax.jit(fn)(params, params if grads is None else grads))


def random_importance(cfg: ModelConfig, seed: int) -> Importance:
    rng = np.random.default_rng(seed)
    L, N, K = cfg.n_layers, cfg.n_heads, cfg.resolved_n_kv_heads
    return Importance(
        hidden=rng.random(cfg.d_model),
        heads=rng.random((L, N)),
        kv_heads=rng.random((L, K)),
        ffn=rng.random((L, cfg.resolved_ffn_dim)),
        head_dim=rng.random((L, cfg.resolved_head_dim)),
    )


def summed_gradient(run: Run, params: dict, batches: Sequence[Batch]) -> dict:
    """dL/dw of the summed token loss over `batches`, laid out like `params`."""

    def grad_fn(params, batch):
        def loss(p):
            losses_BL, weights_BL = token_losses(run.model, p, batch)
            return jnp.sum(losses_BL * weights_BL)

        return jax.grad(loss)(params)

    step = jax.jit(grad_fn, out_shardings=run.shardings.params)
    add = jax.jit(lambda a, b: jax.tree_util.tree_map(jnp.add, a, b), donate_argnums=0)
    total = None
    with run_context(run):
        for batch in batches:
            grads = step(params, batch)
            total = grads if total is None else add(total, grads)
    if total is None:
        raise ValueError("summed_gradient needs at least one batch")
    return total


def taylor_importance(
    run: Run, params: dict, batches: Sequence[Batch], pooled: bool = False
) -> Importance:
    """LLM-Pruner's per-matrix Taylor importance, or (`pooled`) |Σ w·g| over all of a unit's
    weights at once."""
    metric = "taylor_pooled" if pooled else "taylor"
    return weight_importance(run, params, metric, summed_gradient(run, params, batches))


def _captured(run: Run, params: dict, batch: Batch, which) -> dict:
    """The 'intermediates' of one forward pass: sown activations and `which` modules' outputs."""
    _, state = run.model.apply(
        {"params": params},
        batch["inputs"],
        batch["positions"],
        batch["segment_ids"],
        capture_intermediates=lambda module, _: isinstance(module, which),
        mutable=["intermediates"],
    )
    return state["intermediates"]


def activation_importance(run: Run, params: dict, batches: Sequence[Batch]) -> Importance:
    """Minitron activation importance on `batches`, token means (padding weighs 0)."""
    cfg = run.config.model

    def stats(params, batch):
        inter = _captured(run, params, batch, RMSNorm)
        w_BL = batch["weights"].astype(jnp.float32)

        def abs_sum(x_BL_):  # |x| summed over tokens, padding weighted 0
            return jnp.einsum("bl,bl...->...", w_BL, jnp.abs(x_BL_.astype(jnp.float32)))

        hidden = abs_sum(inter["final_norm"]["__call__"][0])
        heads, ffn = [], []
        for i in range(cfg.n_layers):
            layer = inter[f"layers_{i}"]
            hidden += abs_sum(layer["attn_norm"]["__call__"][0])
            hidden += abs_sum(layer["mlp_norm"]["__call__"][0])
            out_BLNH = layer["attn"]["heads_BLNH"][0].astype(jnp.float32)
            heads.append(abs_sum(jnp.sqrt(jnp.sum(out_BLNH**2, axis=-1))))
            ffn.append(abs_sum(layer["mlp"]["hidden_BLF"][0]))
        return {
            "hidden": hidden,
            "heads": jnp.stack(heads),
            "ffn": jnp.stack(ffn),
            "tokens": jnp.sum(w_BL),
        }

    step = jax.jit(stats)
    totals = None
    with run_context(run):
        for batch in batches:
            out = jax.device_get(step(params, batch))
            totals = out if totals is None else jax.tree_util.tree_map(np.add, totals, out)
    if totals is None:
        raise ValueError("activation_importance needs at least one batch")
    tokens = max(float(totals.pop("tokens")), 1.0)
    l2 = weight_importance(run, params, "l2")
    return Importance(
        hidden=np.asarray(totals["hidden"], np.float64) / tokens,
        heads=np.asarray(totals["heads"], np.float64) / tokens,
        kv_heads=np.zeros_like(l2.kv_heads),
        ffn=np.asarray(totals["ffn"], np.float64) / tokens,
        head_dim=l2.head_dim,
    )


def block_influence(run: Run, params: dict, batches: Sequence[Batch]) -> np.ndarray:
    """[L] token mean of 1 - cos(h_in, h_out) of every block of the run's model."""
    cfg = run.config.model

    def stats(params, batch):
        inter = _captured(run, params, batch, Block)
        w_BL = batch["weights"].astype(jnp.float32)
        h_BLD = jnp.take(params["token_embed"], batch["inputs"], axis=0).astype(jnp.float32)
        sums = []
        for i in range(cfg.n_layers):
            out_BLD = inter[f"layers_{i}"]["__call__"][0][0].astype(jnp.float32)
            cos_BL = jnp.sum(h_BLD * out_BLD, -1) / (
                jnp.linalg.norm(h_BLD, axis=-1) * jnp.linalg.norm(out_BLD, axis=-1) + 1e-12
            )
            sums.append(jnp.sum(w_BL * (1.0 - cos_BL)))
            h_BLD = out_BLD
        return jnp.stack(sums), jnp.sum(w_BL)

    step = jax.jit(stats)
    total_L, tokens = np.zeros(cfg.n_layers), 0.0
    with run_context(run):
        for batch in batches:
            sums_L, n = jax.device_get(step(params, batch))
            total_L, tokens = total_L + sums_L, tokens + float(n)
    return total_L / max(tokens, 1.0)
