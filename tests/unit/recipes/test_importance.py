"""Taylor importance per weight matrix (LLM-Pruner, arXiv 2305.11627, Sec. 3.2) against the
pooled variant, exactly, on a score tree whose sums are known."""

import jax.numpy as jnp
import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.recipes.pangu.importance import unit_sums

CFG = ModelConfig(vocab_size=5, d_model=4, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=3)


def score_tree(rng) -> dict:
    D, N, K, H, F, V = 4, 2, 1, 2, 3, 5
    r = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)  # noqa: E731
    layer = {
        "attn_norm": {"scale": r(D)},
        "mlp_norm": {"scale": r(D)},
        "attn": {"q_proj": r(D, N, H), "k_proj": r(D, K, H), "v_proj": r(D, K, H)},
        "mlp": {"gate_proj": r(D, F), "up_proj": r(D, F), "down_proj": r(F, D)},
    }
    layer["attn"]["o_proj"] = r(N, H, D)
    return {"token_embed": r(V, D), "final_norm": {"scale": r(D)}, "layers_0": layer}


def test_taylor_sums_each_matrix_apart_and_pooled_lets_them_cancel():
    score = score_tree(np.random.default_rng(0))
    mlp = {k: np.asarray(v, np.float64) for k, v in score["layers_0"]["mlp"].items()}
    # A neuron whose up column sums to +1 and down row to -1 (gate 0): pooled, they cancel.
    mlp["up_proj"][:, 0] = [1.0, 0.0, 0.0, 0.0]
    mlp["gate_proj"][:, 0] = 0.0
    mlp["down_proj"][0, :] = [-0.5, -0.5, 0.0, 0.0]
    score["layers_0"]["mlp"] = {k: jnp.asarray(v, jnp.float32) for k, v in mlp.items()}
    per_matrix = unit_sums(score, CFG, per_matrix=True)["ffn"][0]
    pooled = np.abs(np.asarray(unit_sums(score, CFG)["ffn"][0]))
    expected = (
        np.abs(mlp["up_proj"].sum(0))
        + np.abs(mlp["gate_proj"].sum(0))
        + np.abs(mlp["down_proj"].sum(1))
    )
    np.testing.assert_allclose(per_matrix, expected, rtol=1e-6)
    np.testing.assert_allclose(
        pooled,
        np.abs(mlp["up_proj"].sum(0) + mlp["gate_proj"].sum(0) + mlp["down_proj"].sum(1)),
        rtol=1e-6,
        atol=1e-7,
    )
    assert pooled[0] < 1e-6 and abs(float(per_matrix[0]) - 2.0) < 1e-6
    # Heads: |Σ q slice| + |Σ o slice| per head; kv groups: |Σ k| + |Σ v|.
    attn = {k: np.asarray(v, np.float64) for k, v in score["layers_0"]["attn"].items()}
    sums = unit_sums(score, CFG, per_matrix=True)
    np.testing.assert_allclose(
        sums["heads"][0],
        np.abs(attn["q_proj"].sum((0, 2))) + np.abs(attn["o_proj"].sum((1, 2))),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        sums["kv_heads"][0],
        np.abs(attn["k_proj"].sum((0, 2))) + np.abs(attn["v_proj"].sum((0, 2))),
        rtol=1e-6,
    )
    # Per matrix is never below pooled (the triangle inequality), unit by unit.
    pooled_all = unit_sums(score, CFG)
    for kind in ("hidden", "heads", "kv_heads", "ffn", "head_dim"):
        assert np.all(np.asarray(sums[kind]) + 1e-5 >= np.abs(np.asarray(pooled_all[kind])))
