"""Super Tiny Language Models levers (arXiv 2405.14159): FFN sharing, byte-pooled input, byte
head — parameters, masking, causality, losses, sampling, sharding and the token byte table."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.support.byte_models import BASE, BYTES, D, T, V, random_token_bytes
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.engine.token_bytes import check_token_bytes
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.eval.generate import generate
from tinylm_jax.interop import llama
from tinylm_jax.model.byte_level import (
    BYTE_PAD,
    BYTE_VOCAB,
    ByteEmbedder,
    TokenBytes,
    byte_losses,
    token_log_probs,
)
from tinylm_jax.model.counting import flops_per_token, model_stats
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.train.bench import synthetic_batch


def init(cfg: ModelConfig, token_bytes: TokenBytes | None = None):
    model = Transformer(cfg, token_bytes=token_bytes)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    return model, nn.unbox(variables["params"])


def forward(model: Transformer):
    """(params, tokens) -> outputs, jitted once per model."""
    return jax.jit(lambda params, tokens: model.apply({"params": params}, tokens)[0])


def n_params(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


def test_default_param_tree_has_no_stlm_parts():
    _, params = init(BASE)
    assert sorted(params) == [
        "final_norm",
        "layers_0",
        "layers_1",
        "layers_2",
        "lm_head",
        "token_embed",
    ]
    assert sorted(params["layers_1"]["mlp"]) == ["down_proj", "gate_proj", "up_proj"]


@pytest.mark.parametrize("scan", [False, True])
def test_ffn_sharing_keeps_one_ffn_equal_to_every_layer_using_it(scan):
    shared_cfg = BASE.replace(ffn_sharing="all", scan_layers=scan)
    shared_model, shared = init(shared_cfg)
    layers = shared["layers"] if scan else shared["layers_1"]
    assert "mlp" not in layers and sorted(shared["shared_mlp"]) == [
        "down_proj",
        "gate_proj",
        "up_proj",
    ]
    one_ffn = 3 * D * 64
    assert n_params(shared) == n_params(init(BASE.replace(scan_layers=scan))[1]) - 2 * one_ffn
    assert model_stats(shared_cfg).total_params == n_params(shared)
    # FLOPs: the shared FFN still runs in every layer.
    assert flops_per_token(shared_cfg, 32) == flops_per_token(BASE, 32)

    # The unshared model with layer i's FFN := the shared one computes the same function.
    plain_model, plain = unshared_copy(shared, scan)
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, V)
    np.testing.assert_allclose(
        forward(shared_model)(shared, tokens), forward(plain_model)(plain, tokens), atol=1e-5
    )


def unshared_copy(shared: dict, scan: bool):
    """An unrolled `ffn_sharing='none'` model whose every layer holds the shared FFN."""
    if scan:
        blocks = [jax.tree_util.tree_map(lambda x, i=i: x[i], shared["layers"]) for i in range(3)]
    else:
        blocks = [shared[f"layers_{i}"] for i in range(3)]
    plain = {k: v for k, v in shared.items() if k not in ("shared_mlp", "layers")}
    for i, block in enumerate(blocks):
        plain[f"layers_{i}"] = {**block, "mlp": shared["shared_mlp"]}
    return Transformer(BASE), plain


def test_shared_ffn_gradient_is_the_sum_over_layers():
    shared_model, shared = init(BASE.replace(ffn_sharing="all"))
    plain_model, plain = unshared_copy(shared, scan=False)
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, V)
    grad = lambda model: jax.jit(jax.grad(lambda p: forward(model)(p, tokens).sum()))
    g_shared = grad(shared_model)(shared)["shared_mlp"]
    g_plain = grad(plain_model)(plain)
    summed = jax.tree_util.tree_map(
        lambda *g: sum(g), *[g_plain[f"layers_{i}"]["mlp"] for i in range(3)]
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_shared, summed
    )


def test_shared_ffn_is_sharded_by_the_rules_and_exports_to_every_layer():
    config = RunConfig(
        model=BASE.replace(ffn_sharing="all", vocab_size=64),
        train=TrainConfig(batch_size=8, seq_len=16),
        mesh=MeshConfig(data=2, fsdp=2, tensor=2),
    )
    run = build_run(config)
    assert tuple(run.shardings.params["shared_mlp"]["up_proj"].spec) == ("fsdp", "tensor")
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda a: rng.normal(size=a.shape).astype(np.float32), run.abstract.params
    )
    tensors = llama.to_hf(params, config.model)
    for i in range(3):
        np.testing.assert_array_equal(
            tensors[f"model.layers.{i}.mlp.up_proj.weight"], params["shared_mlp"]["up_proj"].T
        )


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"input_embedding": "chars"}, "input_embedding"),
        ({"output_head": "bits"}, "output_head"),
        ({"ffn_sharing": "some"}, "ffn_sharing"),
        ({"input_embedding": "byte_pooled", "tie_embeddings": True}, "tie_embeddings"),
        ({"output_head": "bytes", "byte_embed_dim": 12}, "byte_embed_dim"),
        ({"input_embedding": "byte_pooled", "byte_encoder_layers": 0}, "byte_encoder_layers"),
    ],
)
def test_bad_stlm_config_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"ModelConfig.{field}"):
        BASE.replace(**changes)


def test_pooled_embedding_ignores_what_pad_slots_hold():
    cfg = BASE.replace(input_embedding="byte_pooled", **BYTES)
    embedder = ByteEmbedder(cfg)
    bytes_BLT = jnp.array([[[104, 105, BYTE_PAD, BYTE_PAD, BYTE_PAD, BYTE_PAD], [7] * T]])
    valid = bytes_BLT != BYTE_PAD
    params = embedder.init(jax.random.key(0), bytes_BLT, valid)
    base = embedder.apply(params, bytes_BLT, valid)
    junk = jnp.where(
        valid, bytes_BLT, jax.random.randint(jax.random.key(1), bytes_BLT.shape, 0, BYTE_VOCAB)
    )
    np.testing.assert_allclose(embedder.apply(params, junk, valid), base, atol=1e-6)
    changed = embedder.apply(params, bytes_BLT.at[0, 0, 1].set(106), valid)
    assert not np.allclose(changed[0, 0], base[0, 0]) and np.allclose(changed[0, 1], base[0, 1])


def test_byte_pooled_model_is_causal():
    cfg = BASE.replace(input_embedding="byte_pooled", output_head="bytes", **BYTES)
    model, params = init(cfg, random_token_bytes())
    assert "token_embed" not in params and "lm_head" not in params
    apply = forward(model)
    tokens = jax.random.randint(jax.random.key(2), (3, 10), 0, V)
    changed = [tokens.at[i, t].set((tokens[i, t] + 1) % V) for i, t in enumerate((0, 4, 9))]
    base, out = (
        apply(params, tokens),
        apply(params, jnp.stack([c[i] for i, c in enumerate(changed)])),
    )
    for i, t in enumerate((0, 4, 9)):
        np.testing.assert_array_equal(out[i, :t], base[i, :t])
        assert not np.allclose(out[i, t:], base[i, t:])


def test_byte_losses_count_real_bytes_and_the_end_mark():
    targets = jnp.array(
        [[[5, BYTE_PAD, BYTE_PAD, BYTE_PAD, BYTE_PAD, BYTE_PAD], [1, 2, 3, 4, 5, 6]]]
    )
    uniform = jnp.zeros((1, 2, T, BYTE_VOCAB))
    np.testing.assert_allclose(
        byte_losses(uniform, targets),
        [[2 * math.log(BYTE_VOCAB), T * math.log(BYTE_VOCAB)]],
        rtol=1e-6,
    )
    # Logits at the ignored pad slots (after the end mark) never matter.
    noisy = uniform.at[0, 0, 2:].set(jax.random.normal(jax.random.key(0), (T - 2, BYTE_VOCAB)))
    np.testing.assert_allclose(
        byte_losses(noisy, targets)[0, 0], byte_losses(uniform, targets)[0, 0], rtol=1e-6
    )


def test_token_log_probs_are_minus_the_byte_losses_of_canonical_tokens():
    token_bytes = random_token_bytes()
    canonical = np.ones(V, np.bool_)
    canonical[3] = False
    token_bytes = TokenBytes(token_bytes.table_VT, canonical)
    logits_BTS = jax.random.normal(jax.random.key(3), (2, T, BYTE_VOCAB))
    scores_BV = token_log_probs(logits_BTS, token_bytes)
    losses_BV = jax.vmap(
        lambda lg: byte_losses(lg[None, None], jnp.asarray(token_bytes.table_VT)[None])[0]
    )(logits_BTS)
    np.testing.assert_allclose(np.delete(scores_BV, 3, 1), -np.delete(losses_BV, 3, 1), rtol=1e-5)
    assert np.all(np.isneginf(scores_BV[:, 3]))


def test_byte_head_greedy_sampling_follows_the_full_forward():
    cfg = BASE.replace(input_embedding="byte_pooled", output_head="bytes", **BYTES)
    token_bytes = random_token_bytes()
    model, params = init(cfg, token_bytes)
    prompts = [[1, 5, 9], [2, 7, 3]]
    greedy = SamplingConfig(max_new_tokens=4, temperature=0)
    completions = generate(model, params, prompts, greedy, eos_id=-1)  # no EOS: full rows
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    logits = forward(model)(params, jnp.array(rows)[:, :-1])
    scores = jax.vmap(lambda x: token_log_probs(x, token_bytes))(logits)
    np.testing.assert_array_equal(np.argmax(scores, -1)[:, 2:], np.array(rows)[:, 3:])
    sampled = generate(
        model, params, prompts, dataclasses.replace(greedy, temperature=1.0), eos_id=-1
    )
    assert all(0 <= i < V for row in sampled for i in row)


def test_byte_model_counts_by_component_and_cannot_export_to_llama():
    cfg = BASE.replace(input_embedding="byte_pooled", output_head="bytes", **BYTES)
    stats = model_stats(cfg)
    assert set(stats.component_params) == {"byte_embedder", "blocks", "byte_decoder"}
    assert sum(stats.component_params.values()) == stats.total_params
    assert (
        stats.embedding_params == 0
        and stats.flops_per_token
        > flops_per_token(BASE.replace(output_head="bytes", **BYTES), 64) - 1
    )
    with pytest.raises(ConfigError, match="byte-level models cannot be exported"):
        llama.hf_config(cfg, 1, 2, 0)


@pytest.mark.slow
def test_one_and_eight_devices_give_the_same_byte_model_losses():
    cfg = BASE.replace(
        vocab_size=64,
        input_embedding="byte_pooled",
        output_head="bytes",
        ffn_sharing="all",
        **{**BYTES, "n_layers": 2},
    )
    table = np.full((64, T), BYTE_PAD, np.int32)
    table[:V] = random_token_bytes().table_VT
    table[V:, 0] = np.arange(V, 64)
    token_bytes = TokenBytes(table, np.ones(64, np.bool_))
    losses = {}
    for name, mesh in [
        ("one", MeshConfig(data=1, num_devices=1)),
        ("eight", MeshConfig(data=2, fsdp=2, tensor=2)),
    ]:
        run = build_run(
            RunConfig(
                model=cfg, train=TrainConfig(batch_size=8, seq_len=16, num_steps=3), mesh=mesh
            ),
            token_bytes,
        )
        with run_context(run):
            state = init_state(run.init_fn, 0, run.shardings)
            batch = synthetic_batch(run)
            losses[name] = []
            for _ in range(3):
                state, metrics = run.train_step(state, batch)
                losses[name].append(float(metrics["loss"]))
    np.testing.assert_allclose(losses["eight"], losses["one"], rtol=1e-5)
    assert losses["one"][2] < losses["one"][0]


def test_build_run_needs_the_table_exactly_for_byte_models():
    run_config = RunConfig(
        model=BASE.replace(output_head="bytes", **BYTES),
        train=TrainConfig(batch_size=8, seq_len=16),
    )
    with pytest.raises(ConfigError, match="needed"):
        build_run(run_config)
    with pytest.raises(ConfigError, match="not used"):
        build_run(run_config.replace(model=BASE), random_token_bytes())


@pytest.mark.parametrize(
    "name, base, components",
    [
        ("stlm_10m_ffn_shared", "stlm_10m", {"token_embed": 4000 * 384, "blocks": 3_149_952}),
        ("stlm_50m_ffn_shared", "stlm_50m", {"token_embed": 16000 * 512, "blocks": 11_549_184}),
        ("stlm_10m_byte", "stlm_10m", {"byte_embedder": 1_970_304, "byte_decoder": 1_544_064}),
        ("stlm_50m_byte", "stlm_50m", {"byte_embedder": 2_068_736, "byte_decoder": 1_740_672}),
    ],
)
def test_named_stlm_configs(name, base, components, gin_clean):
    stats = model_stats(config_lib.parse([f"models/{name}.gin"]).model)
    base_cfg = config_lib.parse([f"models/{base}.gin"]).model
    for key, count in components.items():
        assert stats.component_params[key] == count
    if "ffn_shared" in name:  # n_layers - 1 FFNs fewer than the base config
        one_ffn = 3 * base_cfg.d_model * base_cfg.ffn_dim
        base_total = model_stats(base_cfg).total_params
        assert stats.total_params == base_total - (base_cfg.n_layers - 1) * one_ffn
    else:  # the same blocks as the base config, no token embedding
        assert stats.component_params["blocks"] == model_stats(base_cfg).component_params["blocks"]
        assert stats.total_params == sum(stats.component_params.values())


def test_a_checkpoint_of_another_byte_table_is_refused():
    table = random_token_bytes()
    check_token_bytes({"token_bytes_fingerprint": table.fingerprint}, table, "ckpt")
    check_token_bytes({}, None, "ckpt")  # token models save none
    with pytest.raises(DataError, match="token byte table"):
        check_token_bytes(
            {"token_bytes_fingerprint": table.fingerprint}, random_token_bytes(1), "ckpt"
        )
    with pytest.raises(DataError, match="token byte table"):
        check_token_bytes({}, table, "ckpt")
