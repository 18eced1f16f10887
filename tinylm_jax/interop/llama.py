"""Hugging Face Llama <-> tinylm: config fields and parameter layout, in both directions.

HF `nn.Linear` weights are [out, in]; ours put the input dim first and keep heads apart:
  q_proj [D, N, H]  <->  model.layers.{i}.self_attn.q_proj.weight [N*H, D]   (k, v: K heads)
  o_proj [N, H, D]  <->  model.layers.{i}.self_attn.o_proj.weight [D, N*H]
  gate/up [D, F], down [F, D]  <->  mlp.{gate,up,down}_proj.weight (transposed)
  token_embed [V, D] <-> model.embed_tokens.weight [V, D]; lm_head [D, V] <-> lm_head.weight [V, D]
Our rotary embedding uses HF's half-split `rotate_half` layout, so q/k rows need no permutation
(the original Meta checkpoints interleave pairs; HF's converter permutes those into this layout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from tinylm_jax.config.model import ModelConfig
from tinylm_jax.errors import ConfigError

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
_ACT_TO_HF = {"swiglu": "silu", "geglu": "gelu_pytorch_tanh"}
# flax's nn.gelu is the tanh approximation, which HF calls gelu_pytorch_tanh / gelu_new.
_HF_TO_ACT = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu_pytorch_tanh": "geglu",
    "gelu_new": "geglu",
}
# Buffers some old checkpoints carry; they are recomputed from the config.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def check_exportable(config: ModelConfig) -> None:
    """Fails on models the Llama format cannot hold (byte-level input or head)."""
    if config.uses_bytes:
        raise ConfigError(
            f"ModelConfig.input_embedding={config.input_embedding!r}, output_head="
            f"{config.output_head!r}: Llama's format holds a token embedding table and a token "
            "head only, so byte-level models cannot be exported to it; export a model with "
            "input_embedding='tokens' and output_head='tokens'"
        )


def hf_config(config: ModelConfig, bos_id: int, eos_id: int, pad_id: int) -> dict:
    """`config.json` of a `LlamaForCausalLM` equal to `config` (transformers 4.x and 5.x keys)."""
    check_exportable(config)
    if config.activation not in _ACT_TO_HF:
        raise ConfigError(
            f"ModelConfig.activation={config.activation!r} has no Llama equivalent; Llama's MLP "
            f"is gated, so only {tuple(_ACT_TO_HF)} export"
        )
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.resolved_ffn_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.resolved_n_kv_heads,
        "head_dim": config.resolved_head_dim,
        "hidden_act": _ACT_TO_HF[config.activation],
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},  # 5.x
        "rope_scaling": None,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": config.init_std,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": config.param_dtype,
        "use_cache": True,
    }


def model_fields(hf: Mapping, source: str = "config.json") -> dict:
    """ModelConfig fields of a Llama-family HF config; fails on what tinylm cannot represent."""

    def fail(why: str) -> None:
        raise ConfigError(f"{source}: {why}; tinylm imports plain Llama-family decoders only")

    model_type = hf.get("model_type")
    if model_type in ("qwen2", "qwen2_moe"):
        fail(
            f"model_type {model_type!r} has biases on the q/k/v projections (Qwen2-style "
            "attention), which tinylm's bias-free attention cannot hold, so they are refused "
            "rather than dropped"
        )
    if model_type not in SUPPORTED_MODEL_TYPES:
        fail(f"model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    rope = hf.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if hf.get("rope_scaling") or rope_type != "default":
        fail(f"RoPE scaling ({hf.get('rope_scaling') or rope}) is not supported")
    for flag in ("attention_bias", "mlp_bias", "qkv_bias", "use_qk_norm"):
        if hf.get(flag):
            fail(f"{flag}=true is not supported (tinylm's projections have no biases or norms)")
    act = hf.get("hidden_act", "silu")
    if act not in _HF_TO_ACT:
        fail(f"hidden_act {act!r} is not one of {tuple(_HF_TO_ACT)}")
    n_heads = hf["num_attention_heads"]
    max_seq_len = hf.get("max_position_embeddings", 2048)
    window = hf.get("sliding_window")
    if window is not None and window < max_seq_len:
        # Within the window, sliding-window attention is plain causal attention.
        log.warning("%s: sliding_window=%d; importing with max_seq_len=%d", source, window, window)
        max_seq_len = window
    return {
        "vocab_size": hf["vocab_size"],
        "d_model": hf["hidden_size"],
        "n_layers": hf["num_hidden_layers"],
        "n_heads": n_heads,
        "n_kv_heads": hf.get("num_key_value_heads") or n_heads,
        "head_dim": hf.get("head_dim") or hf["hidden_size"] // n_heads,
        "ffn_dim": hf["intermediate_size"],
        "activation": _HF_TO_ACT[act],
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "max_seq_len": max_seq_len,
        "init_std": float(hf.get("initializer_range", 0.02)),
    }


def _layer_trees(params: Mapping, config: ModelConfig) -> Iterable[Mapping]:
    """Each block's params, from the unrolled (`layers_{i}`) or scanned (`layers`) layout."""
    if "layers" in params:
        stacked = params["layers"]
        for i in range(config.n_layers):
            yield _map_tree(lambda x, i=i: x[i], stacked)
    else:
        for i in range(config.n_layers):
            yield params[f"layers_{i}"]


def _map_tree(fn: Callable, tree: Mapping) -> dict:
    return {k: _map_tree(fn, v) if isinstance(v, Mapping) else fn(v) for k, v in tree.items()}


def to_hf(params: Mapping, config: ModelConfig) -> dict[str, np.ndarray]:
    """HF state dict (contiguous numpy arrays of `config.param_dtype`) of a tinylm param tree."""
    D = config.d_model
    out = {"model.embed_tokens.weight": params["token_embed"]}
    for i, layer in enumerate(_layer_trees(params, config)):
        prefix = f"model.layers.{i}"
        attn = layer["attn"]
        # A shared FFN (ffn_sharing='all') is written into every layer: Llama has no sharing.
        mlp = params["shared_mlp"] if config.ffn_sharing == "all" else layer["mlp"]
        out[f"{prefix}.input_layernorm.weight"] = layer["attn_norm"]["scale"]
        out[f"{prefix}.post_attention_layernorm.weight"] = layer["mlp_norm"]["scale"]
        for name in ("q_proj", "k_proj", "v_proj"):
            out[f"{prefix}.self_attn.{name}.weight"] = np.asarray(attn[name]).reshape(D, -1).T
        out[f"{prefix}.self_attn.o_proj.weight"] = np.asarray(attn["o_proj"]).reshape(-1, D).T
        for name in ("gate_proj", "up_proj", "down_proj"):
            out[f"{prefix}.mlp.{name}.weight"] = np.asarray(mlp[name]).T
    out["model.norm.weight"] = params["final_norm"]["scale"]
    if not config.tie_embeddings:
        out["lm_head.weight"] = np.asarray(params["lm_head"]).T
    dtype = config.weight_dtype
    return {
        k: np.ascontiguousarray(np.asarray(v).astype(dtype, copy=False)) for k, v in out.items()
    }


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape for `config` (what `from_hf` reads)."""
    V, D, F = config.vocab_size, config.d_model, config.resolved_ffn_dim
    NH = config.n_heads * config.resolved_head_dim
    KH = config.resolved_n_kv_heads * config.resolved_head_dim
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(config.n_layers):
        p = f"model.layers.{i}"
        shapes.update(
            {
                f"{p}.input_layernorm.weight": (D,),
                f"{p}.post_attention_layernorm.weight": (D,),
                f"{p}.self_attn.q_proj.weight": (NH, D),
                f"{p}.self_attn.k_proj.weight": (KH, D),
                f"{p}.self_attn.v_proj.weight": (KH, D),
                f"{p}.self_attn.o_proj.weight": (D, NH),
                f"{p}.mlp.gate_proj.weight": (F, D),
                f"{p}.mlp.up_proj.weight": (F, D),
                f"{p}.mlp.down_proj.weight": (D, F),
            }
        )
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (V, D)
    return shapes


def from_hf(
    names: Iterable[str], read: Callable[[str], np.ndarray], config: ModelConfig, source: str
) -> dict:
    """tinylm params (numpy, `config.param_dtype`) from HF tensors `read(name)`.

    Checks every tensor's presence and shape first, naming the offending one; a tied
    checkpoint's redundant `lm_head.weight` is ignored.
    """
    shapes = expected_shapes(config)
    names = set(names)
    missing = sorted(set(shapes) - names)
    unexpected = sorted(
        n
        for n in names - set(shapes)
        if not n.endswith(_IGNORED_SUFFIXES)
        and not (config.tie_embeddings and n == "lm_head.weight")
    )
    biases = [n for n in unexpected if n.endswith(".bias")]
    if biases:
        raise ConfigError(
            f"{source}: holds projection biases ({biases[:3]}), e.g. Qwen2-style attention; "
            "tinylm's projections have none, so the checkpoint is refused rather than imported "
            "without them"
        )
    if missing or unexpected:
        raise ConfigError(
            f"{source}: tensors do not match a Llama model of this config.json "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); tinylm imports plain "
            "Llama-family decoders only"
        )
    dtype = config.weight_dtype
    N, K, H, D = (
        config.n_heads,
        config.resolved_n_kv_heads,
        config.resolved_head_dim,
        config.d_model,
    )

    def get(name: str) -> np.ndarray:
        array = np.asarray(read(name))
        if tuple(array.shape) != shapes[name]:
            raise ConfigError(
                f"{source}: {name} has shape {tuple(array.shape)}, but config.json implies "
                f"{shapes[name]}"
            )
        return array.astype(np.float32, copy=False).astype(dtype, copy=False)

    layers = []
    for i in range(config.n_layers):
        p = f"model.layers.{i}"
        layers.append(
            {
                "attn_norm": {"scale": get(f"{p}.input_layernorm.weight")},
                "mlp_norm": {"scale": get(f"{p}.post_attention_layernorm.weight")},
                "attn": {
                    "q_proj": get(f"{p}.self_attn.q_proj.weight").T.reshape(D, N, H),
                    "k_proj": get(f"{p}.self_attn.k_proj.weight").T.reshape(D, K, H),
                    "v_proj": get(f"{p}.self_attn.v_proj.weight").T.reshape(D, K, H),
                    "o_proj": get(f"{p}.self_attn.o_proj.weight").T.reshape(N, H, D),
                },
                "mlp": {
                    name: get(f"{p}.mlp.{name}.weight").T
                    for name in ("gate_proj", "up_proj", "down_proj")
                },
            }
        )
    params = {
        "token_embed": get("model.embed_tokens.weight"),
        "final_norm": {"scale": get("model.norm.weight")},
    }
    if config.scan_layers:
        params["layers"] = _stack(layers)
    else:
        params.update({f"layers_{i}": layer for i, layer in enumerate(layers)})
    if not config.tie_embeddings:
        params["lm_head"] = get("lm_head.weight").T
    return params


def _stack(trees: Sequence[Mapping]) -> dict:
    first = trees[0]
    return {
        k: _stack([t[k] for t in trees])
        if isinstance(v, Mapping)
        else np.stack([t[k] for t in trees])
        for k, v in first.items()
    }
