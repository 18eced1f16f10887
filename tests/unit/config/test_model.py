"""Named configs count the parameters their papers (or our derivations) say."""

import pytest

from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.counting import flops_per_token, model_stats


def llama_params(V, D, L, N, K, H, F, tied):
    per_layer = D * H * (2 * N + 2 * K) + 3 * D * F + 2 * D
    return V * D * (1 if tied else 2) + L * per_layer + D


NAMED = {
    # TinyLlama's published count, exactly.
    "models/tinyllama_1_1b.gin": 1_100_048_384,
    # PanGu-pi-1B Pro released config: 1792 hidden, 14 heads, FFN 4864, 20 layers, 48k, untied.
    "models/pangu_pi_1b_pro.gin": llama_params(48000, 1792, 20, 14, 14, 128, 4864, False),
    "models/pangu_pi_1b.gin": llama_params(100883, 2048, 12, 16, 16, 128, 5632, False),
    # The paper's table depth (21) next to the released code's (20).
    "models/pangu_pi_1b_pro_21l.gin": llama_params(48000, 1792, 21, 14, 14, 128, 4864, False),
    # FFN 6912 inferred from the paper's 1.5B (the paper gives no FFN width).
    "models/pangu_pi_1_5b_pro.gin": llama_params(48000, 2048, 22, 16, 16, 128, 6912, False),
    "models/stlm_10m.gin": llama_params(4000, 384, 5, 6, 2, 64, 1024, True),
    "models/stlm_50m.gin": llama_params(16000, 512, 14, 8, 2, 64, 1536, True),
    "models/stlm_100m.gin": llama_params(16000, 768, 14, 12, 4, 64, 2048, True),
}


@pytest.mark.parametrize("gin_file, expected", sorted(NAMED.items()))
def test_named_config_param_counts(gin_file, expected, gin_clean):
    assert model_stats(config_lib.parse([gin_file]).model).total_params == expected


def test_pangu_1b_pro_embedding_share_matches_paper(gin_clean):
    stats = model_stats(config_lib.parse(["models/pangu_pi_1b_pro.gin"]).model)
    assert abs(stats.total_params - 0.95e9) < 0.01e9
    assert round(100 * stats.embedding_share, 2) == 18.07  # arXiv 2402.02791, Sec. 3.1


def test_pangu_1_5b_pro_matches_paper_size(gin_clean):
    total = model_stats(config_lib.parse(["models/pangu_pi_1_5b_pro.gin"]).model).total_params
    assert 1.45e9 <= total <= 1.55e9  # arXiv 2402.02791, Table 1: 1.5B


def test_ffn_ratio_rounds_up_to_multiple():
    assert ModelConfig(d_model=1792, n_heads=14).resolved_ffn_dim == 4864
    assert ModelConfig(d_model=384, n_heads=6, ffn_multiple_of=256).resolved_ffn_dim == 1024
    assert ModelConfig(d_model=384, n_heads=6, ffn_dim=1000).resolved_ffn_dim == 1000


def test_flops_per_token_is_six_n_plus_attention():
    cfg = ModelConfig(vocab_size=100, d_model=64, n_layers=2, n_heads=4, ffn_dim=128)
    matmul = 2 * (4 * 64 * 64 + 3 * 64 * 128) + 64 * 100
    assert flops_per_token(cfg, seq_len=32) == 6 * matmul + 6 * 2 * 32 * 64


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"d_model": 100, "n_heads": 3}, "n_heads"),
        ({"n_heads": 4, "n_kv_heads": 3}, "n_kv_heads"),
        ({"activation": "tanh"}, "activation"),
        ({"remat": "sometimes"}, "remat"),
        ({"dtype": "float8"}, "dtype"),
    ],
)
def test_bad_model_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"ModelConfig.{field}"):
        ModelConfig(**changes)
