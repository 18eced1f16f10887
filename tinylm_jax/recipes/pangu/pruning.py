"""Structured pruning of a Transformer param tree: which parent units a child keeps, and the
child's params as slices of the parent's.

Units (PanGu-pi Pro, arXiv 2402.02791, Sec. 3.3; Sheared-LLaMA, arXiv 2310.06694, Sec. 2.1):
  layers       whole blocks, by `select_layers`;
  hidden       d_model channels, chosen once and applied everywhere the residual stream
               goes: token_embed columns, every norm scale, q/k/v/gate/up input rows,
               o/down output columns, lm_head rows;
  heads        whole query heads; under GQA whole kv groups with their query heads;
  ffn          neurons, the same index in gate, up (columns) and down (rows);
  head_dim     rotary pairs (j, j + H/2), when the child's head_dim is smaller.

Two rescalings keep a child whose removed units carry nothing equal to its parent (up to
float rounding, and to the RMSNorm eps where it is not negligible against the activations'
mean square):
  - RMSNorm averages over d_model, so every norm scale is multiplied by sqrt(D_p / D_c): with
    zero residual channels removed, the kept channels' normalized values are the parent's.
  - Attention logits are divided by sqrt(head_dim), so q_proj is multiplied by
    sqrt(H_c / H_p) when head_dim shrinks.

A child group may hold more query heads than a parent group (e.g. MHA -> GQA): then
`m = ceil(G_c / G_p)` parent kv groups form one child group, its k/v projections are the mean
of theirs (mean pooling, as GQA's uptraining does, arXiv 2305.13245, Sec. 2.1) and its query
heads are the best G_c of their query heads.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from flax import traverse_util

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import ConfigError

Params = dict


@dataclasses.dataclass(frozen=True)
class Importance:
    """Non-negative importance of every width unit of a (depth-pruned) parent.

    A kv group's importance is its kv head's own (`kv_heads`) plus its query heads'.
    """

    hidden: np.ndarray  # [D]
    heads: np.ndarray  # [L, N] query heads
    kv_heads: np.ndarray  # [L, K] what the k/v projections own
    ffn: np.ndarray  # [L, F]
    head_dim: np.ndarray  # [L, H]


@dataclasses.dataclass(frozen=True)
class Selection:
    """Parent indices the child keeps, in child order."""

    layers: tuple[int, ...]  # [L_c] parent layers
    hidden: np.ndarray  # [D_c]
    heads: np.ndarray  # [L_c, N_c] parent query head of each child query head
    kv_groups: np.ndarray  # [L_c, K_c, m] parent kv heads mean-pooled into each child kv head
    ffn: np.ndarray  # [L_c, F_c]
    head_dim: np.ndarray  # [L_c, H_c]


def group_merge(parent: ModelConfig, child: ModelConfig) -> int:
    """m, the number of parent kv groups per child kv group; ConfigError if the child does not
    fit inside the parent."""
    dims = {
        "n_layers": (parent.n_layers, child.n_layers),
        "d_model": (parent.d_model, child.d_model),
        "n_heads": (parent.n_heads, child.n_heads),
        "n_kv_heads": (parent.resolved_n_kv_heads, child.resolved_n_kv_heads),
        "head_dim": (parent.resolved_head_dim, child.resolved_head_dim),
        "ffn_dim": (parent.resolved_ffn_dim, child.resolved_ffn_dim),
    }
    larger = [f"{k}={c} > parent's {p}" for k, (p, c) in dims.items() if c > p]
    if larger:
        raise ConfigError(
            f"the child ModelConfig is larger than the parent in {', '.join(larger)}; "
            "inheritance only prunes: make every child dimension <= the parent's"
        )
    for field in ("activation",):
        if getattr(parent, field) != getattr(child, field):
            raise ConfigError(
                f"ModelConfig.{field}: the child's {getattr(child, field)!r} differs from the "
                f"parent's {getattr(parent, field)!r}; set the parent's"
            )
    if parent.tie_embeddings is False and child.tie_embeddings:
        raise ConfigError(
            "ModelConfig.tie_embeddings: the parent has a separate lm_head, a tied child would "
            "lose it; set ModelConfig.tie_embeddings = False"
        )
    g_parent = parent.n_heads // parent.resolved_n_kv_heads
    g_child = child.n_heads // child.resolved_n_kv_heads
    m = -(-g_child // g_parent)
    if child.resolved_n_kv_heads * m > parent.resolved_n_kv_heads:
        raise ConfigError(
            f"incompatible head grouping: each child kv group has {g_child} query heads, so it "
            f"needs {m} of the parent's groups of {g_parent}, but "
            f"{child.resolved_n_kv_heads} x {m} > the parent's {parent.resolved_n_kv_heads} kv "
            "heads; lower ModelConfig.n_kv_heads or n_heads of the child"
        )
    return m


def select_layers(
    rule: str,
    n_parent: int,
    n_child: int,
    explicit: tuple[int, ...] | None = None,
    influence_L: np.ndarray | None = None,
) -> tuple[int, ...]:
    """The parent layers the child keeps, in order.

    'ends' keeps the first ceil(n/2) and the last floor(n/2) layers (PanGu-pi Pro, Sec. 3.3:
    layers near both ends matter most); 'block_influence' the n with the highest
    `influence_L` (ShortGPT, arXiv 2403.03853, Sec. 3.1).
    """
    if rule == "ends":
        head = -(-n_child // 2)
        layers = list(range(head)) + list(range(n_parent - (n_child - head), n_parent))
    elif rule == "first":
        layers = list(range(n_child))
    elif rule == "uniform":
        layers = np.round(np.linspace(0, n_parent - 1, n_child)).astype(int).tolist()
    elif rule == "block_influence":
        layers = sorted(top_k(np.asarray(influence_L), n_child).tolist())
    elif rule == "explicit":
        layers = list(explicit or ())
        if (
            len(layers) != n_child
            or len(set(layers)) != n_child
            or not all(0 <= i < n_parent for i in layers)
        ):
            raise ConfigError(
                f"InheritConfig.layers={explicit} must hold {n_child} distinct parent layer "
                f"indices in [0, {n_parent}) (the child's ModelConfig.n_layers)"
            )
    else:
        raise ConfigError(f"InheritConfig.layer_selection={rule!r} is unknown")
    return tuple(int(i) for i in layers)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores in increasing index order (ties: lower index first)."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return np.sort(order[:k])


def choose_heads(
    heads_N: np.ndarray, kv_K: np.ndarray, parent: ModelConfig, child: ModelConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(child query heads [N_c], pooled parent kv heads [K_c, m]) of one layer."""
    m = group_merge(parent, child)
    g_parent = parent.n_heads // parent.resolved_n_kv_heads
    g_child = child.n_heads // child.resolved_n_kv_heads
    group_K = kv_K + heads_N.reshape(-1, g_parent).sum(axis=1)
    kept = top_k(group_K, child.resolved_n_kv_heads * m).reshape(-1, m)
    heads = []
    for groups in kept:
        candidates = np.concatenate([np.arange(g * g_parent, (g + 1) * g_parent) for g in groups])
        heads.append(candidates[top_k(heads_N[candidates], g_child)])
    return np.concatenate(heads), kept


def head_dim_pairs(scores_H: np.ndarray, child_head_dim: int) -> np.ndarray:
    """Kept head_dim channels [H_c]: whole rotary pairs (j, j + H/2), in the half-split layout."""
    half = scores_H.shape[0] // 2
    pairs = top_k(scores_H[:half] + scores_H[half:], child_head_dim // 2)
    return np.concatenate([pairs, pairs + half])


def select(
    importance: Importance, layers: tuple[int, ...], parent: ModelConfig, child: ModelConfig
) -> Selection:
    """The child's kept units; `importance` is of the depth-pruned parent (its layer l is
    parent layer `layers[l]`)."""
    picks = [
        choose_heads(heads_N, kv_K, parent, child)
        for heads_N, kv_K in zip(importance.heads, importance.kv_heads, strict=True)
    ]
    return Selection(
        layers=layers,
        hidden=top_k(importance.hidden, child.d_model),
        heads=np.stack([p[0] for p in picks]),
        kv_groups=np.stack([p[1] for p in picks]),
        ffn=np.stack([top_k(f, child.resolved_ffn_dim) for f in importance.ffn]),
        head_dim=np.stack(
            [head_dim_pairs(h, child.resolved_head_dim) for h in importance.head_dim]
        ),
    )


def kept_fractions(importance: Importance, selection: Selection) -> dict:
    """Share of the importance the child keeps: hidden (one number), per layer heads and ffn."""

    def share(scores: np.ndarray, kept: np.ndarray) -> float:
        total = float(np.sum(scores))
        return float(np.sum(scores[kept]) / total) if total > 0 else 1.0

    return {
        "hidden": share(importance.hidden, selection.hidden),
        "heads": [share(h, k) for h, k in zip(importance.heads, selection.heads, strict=True)],
        "ffn": [share(f, k) for f, k in zip(importance.ffn, selection.ffn, strict=True)],
    }


def unstack_layers(params: Params, n_layers: int) -> Params:
    """Scanned layout (`layers/...` with a leading layer axis) -> `layers_{i}/...`."""
    if "layers" not in params:
        return params
    out = {k: v for k, v in params.items() if k != "layers"}
    flat = traverse_util.flatten_dict(params["layers"])
    for i in range(n_layers):
        out[f"layers_{i}"] = traverse_util.unflatten_dict({k: v[i] for k, v in flat.items()})
    return out


def stack_layers(params: Params, n_layers: int) -> Params:
    """`layers_{i}/...` -> the scanned layout (`layers/...` with a leading layer axis)."""
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    flats = [traverse_util.flatten_dict(params[f"layers_{i}"]) for i in range(n_layers)]
    out["layers"] = traverse_util.unflatten_dict(
        {k: np.stack([f[k] for f in flats]) for k in flats[0]}
    )
    return out


def take_layers(params: Params, layers: tuple[int, ...]) -> Params:
    """An unrolled param tree with only `layers` (renumbered 0..n-1)."""
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    out.update({f"layers_{i}": params[f"layers_{p}"] for i, p in enumerate(layers)})
    return out


def prune_params(
    params: Params, parent: ModelConfig, child: ModelConfig, selection: Selection
) -> Params:
    """The child's unrolled params from the depth-pruned parent's (`params`, unrolled, host
    numpy arrays, layer l = parent layer `selection.layers[l]`)."""
    d_ = selection.hidden
    norm_scale = math.sqrt(parent.d_model / child.d_model)
    q_scale = math.sqrt(child.resolved_head_dim / parent.resolved_head_dim)
    p = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(params, sep="/").items()}
    out = {
        "token_embed": p["token_embed"][:, d_],
        "final_norm/scale": p["final_norm/scale"][d_] * norm_scale,
    }
    if "lm_head" in p:
        out["lm_head"] = p["lm_head"][d_]
    elif not child.tie_embeddings:
        out["lm_head"] = p["token_embed"].T[d_]
    for i in range(child.n_layers):
        src = lambda name, i=i: p[f"layers_{i}/{name}"]  # noqa: E731
        dst = f"layers_{i}/"
        heads, kv, h_ = selection.heads[i], selection.kv_groups[i], selection.head_dim[i]
        f_ = selection.ffn[i]
        for norm in ("attn_norm", "mlp_norm"):
            out[dst + f"{norm}/scale"] = src(f"{norm}/scale")[d_] * norm_scale
        out[dst + "attn/q_proj"] = src("attn/q_proj")[d_][:, heads][:, :, h_] * q_scale
        for name in ("k_proj", "v_proj"):
            w_DKmH = src(f"attn/{name}")[d_][:, kv][..., h_]
            out[dst + f"attn/{name}"] = w_DKmH.mean(axis=2)
        out[dst + "attn/o_proj"] = src("attn/o_proj")[heads][:, h_][..., d_]
        out[dst + "mlp/up_proj"] = src("mlp/up_proj")[d_][:, f_]
        if child.gated:
            out[dst + "mlp/gate_proj"] = src("mlp/gate_proj")[d_][:, f_]
        out[dst + "mlp/down_proj"] = src("mlp/down_proj")[f_][:, d_]
    dtype = child.weight_dtype
    tree = traverse_util.unflatten_dict({k: v.astype(dtype) for k, v in out.items()}, sep="/")
    return stack_layers(tree, child.n_layers) if child.scan_layers else tree
