"""Hugging Face interop: export → transformers, import ← transformers, greedy decoding parity;
checkpoints whose tokenizer is a byte-level BPE tokenizer.json, end to end."""

import inspect
import io
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from tests.support.hf import TEXTS, transformers
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.errors import ConfigError
from tinylm_jax.interop import hf_tokenizer, llama, safetensors_io
from tinylm_jax.model.transformer import Transformer


@pytest.mark.parametrize("model_type, dummy_prefix", [("bpe", False), ("unigram", True)])
def test_hf_tokenizer_files_for_bpe_and_dummy_prefix_models(tmp_path, model_type, dummy_prefix):
    """BPE pieces (merges ranked like SentencePiece) and Llama's dummy-prefix space."""
    source = Path(inspect.__file__).read_text()
    corpus = [text * 3 for text in TEXTS] + [source[i : i + 2000] for i in range(0, 40000, 2000)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        model_type=model_type,
        vocab_size=400,
        byte_fallback=True,
        add_dummy_prefix=dummy_prefix,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "sp.model").write_bytes(model.getvalue())
    tokenizer = load_tokenizer(tmp_path / "sp.model")
    hf_tokenizer.write_hf_tokenizer(tokenizer, tmp_path, 256)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    # Not TEXTS[3]: spelling "<s>" with characters outside a small vocabulary is a documented
    # difference (see hf_tokenizer); the 512-piece tokenizer above has those characters.
    for text in TEXTS[:3]:
        ids = tokenizer.encode(text)
        assert loaded(text).input_ids == [tokenizer.bos_id] + ids, text
        assert loaded.decode(ids) == tokenizer.decode(ids)


def test_bfloat16_sharded_round_trip_into_scanned_layers(tmp_path):
    """to_hf → sharded safetensors → from_hf, bfloat16 and scanned, without torch or a model."""
    config = ModelConfig(vocab_size=64, d_model=16, n_layers=3, n_heads=4, n_kv_heads=1)
    config = config.replace(ffn_dim=40, param_dtype="bfloat16", scan_layers=True)
    abstract = jax.eval_shape(
        lambda: Transformer(config).init(jax.random.key(0), np.zeros((1, 4), np.int32))
    )["params"]
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda a: rng.normal(size=a.value.shape).astype(jnp.bfloat16),
        abstract,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    tensors = llama.to_hf(params, config)
    assert len(tensors) == 2 + 9 * 3 + 1 and tensors["lm_head.weight"].dtype == jnp.bfloat16
    files = safetensors_io.write_tensors(tensors, tmp_path, max_shard_bytes=4096)
    assert safetensors_io.INDEX_FILE in files and len(files) > 3
    reader = safetensors_io.TensorReader(tmp_path)
    back = llama.from_hf(reader.names, reader.read, config, str(tmp_path))
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)


def test_qwen2_style_attention_biases_are_refused_by_name():
    hf = {"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1,
          "num_attention_heads": 4, "intermediate_size": 64}  # fmt: skip
    with pytest.raises(ConfigError, match="biases on the q/k/v projections"):
        llama.model_fields(hf)
    # A Llama-typed config whose tensors carry biases anyway is refused too, not truncated.
    config = ModelConfig(**llama.model_fields({**hf, "model_type": "llama"}))
    shapes = llama.expected_shapes(config)
    names = [*shapes, "model.layers.0.self_attn.q_proj.bias"]
    with pytest.raises(ConfigError, match=r"projection biases \(\['model.layers.0.self_attn"):
        llama.from_hf(names, lambda n: np.zeros(shapes[n], np.float32), config, "ckpt")
