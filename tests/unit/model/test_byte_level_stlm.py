"""`ModelConfig.byte_variant='stlm'`: the released STLM byte path, against closed forms."""

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.support.byte_models import BASE, BYTES, T, V
from tinylm_jax.cli import main as cli
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import ConfigError
from tinylm_jax.model.byte_level import (
    BYTE_PAD,
    BYTE_VOCAB,
    ByteEmbedder,
    TokenBytes,
    byte_losses,
    token_log_probs,
)
from tinylm_jax.model.counting import abstract_params, model_stats

STLM = dict(BYTES, input_embedding="byte_pooled", output_head="bytes", byte_variant="stlm")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"byte_variant": "published"}, "is not one of"),
        ({"byte_variant": "stlm"}, "has neither"),
    ],
)
def test_bad_byte_variant_is_explained(changes, message):
    with pytest.raises(ConfigError, match=f"ModelConfig.byte_variant: .*{message}"):
        BASE.replace(**changes)


def test_default_byte_variant_is_tinylm():
    assert ModelConfig().byte_variant == "tinylm" and not BASE.replace(**BYTES).reconstructs_bytes


def test_stlm_pooled_embedding_is_the_mean_over_all_slots_including_pads():
    """One block with zero attention and one-hot inputs: each slot's output is
    gelu(rms-normed one-hot) @ down, and the token's vector is their mean over all 12 slots."""
    E, D, slots = 8, 4, 12
    cfg = BASE.replace(
        d_model=D, n_heads=2, input_embedding="byte_pooled", byte_variant="stlm",
        byte_embed_dim=E, max_token_bytes=slots, byte_encoder_layers=1,
    )  # fmt: skip
    bytes_BLT = jnp.array([[[97, 98] + [BYTE_PAD] * (slots - 2)]])
    embedder = ByteEmbedder(cfg)
    params = nn.unbox(embedder.init(jax.random.key(0), bytes_BLT, bytes_BLT != BYTE_PAD))
    one_hot = {97: 0, 98: 1, BYTE_PAD: 7}
    embed = np.zeros((BYTE_VOCAB, E), np.float32)
    for symbol, k in one_hot.items():
        embed[symbol, k] = 1.0
    down = np.arange(4 * E * D, dtype=np.float32).reshape(4 * E, D) / 100
    block = params["params"]["blocks_0"]
    block = jax.tree_util.tree_map(jnp.zeros_like, block) | {
        "attn_norm": block["attn_norm"],
        "mlp_norm": block["mlp_norm"],
        "up_proj": jnp.eye(E, 4 * E),
        "down_proj": jnp.asarray(down),
    }
    params = {"params": {"byte_embed": embed, "byte_pos": jnp.zeros((slots, E)), "blocks_0": block}}
    pooled = embedder.apply(params, bytes_BLT, bytes_BLT != BYTE_PAD)[0, 0]

    normed = 1 / math.sqrt(1 / E + 1e-6)  # RMSNorm (eps 1e-6) of a one-hot vector
    gelu = 0.5 * normed * (1 + math.erf(normed / math.sqrt(2)))  # exact GELU, as PyTorch's
    expected = gelu * (down[0] + down[1] + (slots - 2) * down[7]) / slots
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)


def test_stlm_byte_losses_ignore_every_pad():
    targets = jnp.array([[[5, 6, BYTE_PAD, BYTE_PAD, BYTE_PAD, BYTE_PAD], [1, 2, 3, 4, 5, 6]]])
    uniform = jnp.zeros((1, 2, T, BYTE_VOCAB))
    losses = byte_losses(uniform, targets, "stlm")
    np.testing.assert_allclose(losses, [[2 * math.log(BYTE_VOCAB), T * math.log(BYTE_VOCAB)]])
    # Any logits at the pad slots, the first one included, leave the loss unchanged.
    noisy = uniform.at[0, 0, 2:].set(jax.random.normal(jax.random.key(0), (T - 2, BYTE_VOCAB)))
    np.testing.assert_allclose(byte_losses(noisy, targets, "stlm"), losses, rtol=1e-6)
    assert byte_losses(noisy, targets)[0, 0] != pytest.approx(float(losses[0, 0]))  # tinylm


def test_stlm_token_scores_are_minus_the_stlm_byte_losses():
    table = np.full((V, T), BYTE_PAD, np.int32)
    table[:, 0] = np.arange(V)
    table[::2, 1] = 7
    token_bytes = TokenBytes(table, np.ones(V, np.bool_))
    logits_BTS = jax.random.normal(jax.random.key(3), (1, T, BYTE_VOCAB))
    losses_V = byte_losses(logits_BTS[:, None], jnp.asarray(table)[None], "stlm")[0]
    np.testing.assert_allclose(
        token_log_probs(logits_BTS, token_bytes, "stlm")[0], -losses_V, rtol=1e-5
    )


@pytest.mark.parametrize("variant", ["tinylm", "stlm"])
def test_byte_embedder_initialization(variant):
    """'stlm': PyTorch's defaults (tables N(0, 1), kernels U(±1/sqrt(fan_in))); 'tinylm':
    normal(init_std)."""
    cfg = BASE.replace(**STLM).replace(byte_variant=variant, byte_encoder_layers=1)
    bytes_BLT = jnp.full((1, 1, T), BYTE_PAD)
    params = nn.unbox(ByteEmbedder(cfg).init(jax.random.key(0), bytes_BLT, bytes_BLT != BYTE_PAD))
    embedder, E = params["params"], cfg.byte_embed_dim
    if variant == "tinylm":
        assert np.std(embedder["byte_embed"]) == pytest.approx(cfg.init_std, rel=0.1)
        return
    assert np.std(embedder["byte_embed"]) == pytest.approx(1.0, rel=0.1)
    kernels = {
        "q_proj": (embedder["blocks_0"]["q_proj"], E),
        "o_proj": (embedder["blocks_0"]["o_proj"], E),
        "down_proj": (embedder["blocks_0"]["down_proj"], 4 * E),
    }
    for name, (kernel, fan_in) in kernels.items():
        bound = 1 / math.sqrt(fan_in)
        assert 0.9 * bound < np.max(np.abs(kernel)) <= bound, name


def byte_block_params(d_in: int, d_out: int, ffn: int, skip: bool) -> int:
    """Two norms, q/k/v/o at d_in, the FFN, and (ours, widening) a skip projection."""
    return 2 * d_in + 4 * d_in * d_in + d_in * ffn + ffn * d_out + (d_in * d_out if skip else 0)


def hand_byte_params(cfg: ModelConfig) -> dict[str, int]:
    """Embedder and decoder parameters: 'tinylm' FFNs at 2x, skips and final norms; 'stlm'
    FFNs at 4x, neither skips nor norms."""
    E, T_, D, S = cfg.byte_embed_dim, cfg.max_token_bytes, cfg.d_model, BYTE_VOCAB
    stlm = cfg.byte_variant == "stlm"
    ratio = 4 if stlm else 2
    widths = [E] + [2 * E] * (cfg.byte_encoder_layers - 1) + [D]
    blocks = sum(
        byte_block_params(a, b, ratio * a, a != b and not stlm)
        for a, b in zip(widths, widths[1:], strict=False)
    )
    decoder_block = byte_block_params(E, E, ratio * E, False)
    return {
        "byte_embedder": S * E + T_ * E + blocks + (0 if stlm else D),
        "byte_decoder": D * T_ * E + T_ * E + cfg.byte_decoder_layers * decoder_block
        + E * S + (0 if stlm else E),
    }  # fmt: skip


@pytest.mark.parametrize("variant", ["tinylm", "stlm"])
def test_info_counts_both_variants_as_by_hand(variant, capsys, gin_clean):
    argv = ["info", "--gin_file=models/stlm_10m_byte.gin", "--json"]
    assert cli.main([*argv, f"--gin_param=ModelConfig.byte_variant = '{variant}'"]) == 0
    counts = json.loads(capsys.readouterr().out)["component_params"]
    cfg = ModelConfig(
        vocab_size=4000, d_model=384, n_layers=5, n_heads=6, n_kv_heads=2, ffn_dim=1024,
        input_embedding="byte_pooled", output_head="bytes", byte_variant=variant,
    )  # fmt: skip
    assert {k: counts[k] for k in ("byte_embedder", "byte_decoder")} == hand_byte_params(cfg)
    # The released core model has no final norm before the byte decoder.
    tinylm_blocks = 7_868_544  # configs/models/stlm_10m_byte.gin
    assert counts["blocks"] == tinylm_blocks - (384 if variant == "stlm" else 0)
    if variant == "tinylm":
        assert sum(counts.values()) == 11_382_912  # unchanged: the gin file's own count


@pytest.mark.parametrize("variant", ["tinylm", "stlm"])
def test_small_model_counts_as_by_hand(variant):
    cfg = BASE.replace(**STLM).replace(byte_variant=variant)
    expected = hand_byte_params(cfg)
    assert {k: model_stats(cfg).component_params[k] for k in expected} == expected
    params = abstract_params(cfg)
    assert ("final_norm" in params) == (variant == "tinylm")
    assert ("skip_proj" in params["byte_embedder"]["blocks_0"]) == (variant == "tinylm")
