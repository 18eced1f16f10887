"""Bits per byte counts the UTF-8 bytes of the decoded text: checked by hand on a known model."""

import math

import jax
import numpy as np
import pytest

from tests.helpers import TINY_DATA
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.engine.run import build_run
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.heldout import evaluate

TEXT = "naïve café ☕"  # naïve 6 bytes, space 1, café 5, space 1, ☕ 3
TEXT_BYTES = 16


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> Tokenizer:
    # TINY_DATA's corpus and tokenizer (shared through the session's data cache).
    config = DataConfig(max_documents=60, vocab_size=512, validation_fraction=0.05)
    assert f"DataConfig.max_documents = {config.max_documents}" in TINY_DATA
    return load_tokenizer(pipeline.train_tokenizer_for(config))


def test_byte_table_sums_to_the_decoded_text(tokenizer):
    table = token_byte_lengths(tokenizer, 600)
    assert len(TEXT.encode("utf-8")) == TEXT_BYTES
    for text in [TEXT, "def f(x):\n\treturn x  # ok", "  spaces  ", "日本語 😀 \u2581", "\x00"]:
        ids = tokenizer.encode(text)
        assert table[ids].sum() == len(tokenizer.decode(ids).encode("utf-8")), text
    specials = [tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id]
    assert table[specials].sum() == 0 and table[tokenizer.vocab_size :].sum() == 0
    # Characters outside the vocabulary fall back to one piece per UTF-8 byte.
    assert len(tokenizer.encode("☕")) == 3 and table[tokenizer.encode("☕")].tolist() == [1, 1, 1]


def test_constant_logit_model_gives_log2_vocab_bits_per_token(tokenizer, gin_clean):
    """All-zero params make every logit 0: loss is ln V per token, whatever the text."""
    model_config = ModelConfig(
        vocab_size=512, d_model=32, n_layers=1, n_heads=4, ffn_dim=64, max_seq_len=64
    )
    run = build_run(RunConfig(model=model_config, train=TrainConfig(batch_size=8, seq_len=32)))
    params = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), run.abstract.params)

    ids = [tokenizer.bos_id, *tokenizer.encode(TEXT), tokenizer.eos_id]
    tokens = np.zeros(33, np.int32)
    tokens[: len(ids)] = ids
    segments = (np.arange(33) < len(ids)).astype(np.int32)
    record = {"tokens": tokens, "segment_ids": segments, "positions": np.arange(33), "id": 0}
    data = pipeline.PreparedData(tokenizer, [], [record], 32, {})

    table = token_byte_lengths(tokenizer, model_config.vocab_size)
    result = evaluate(run, params, data, table, None)
    targets = len(ids) - 1  # every token after BOS, EOS included (it decodes to 0 bytes)
    assert result["eval_tokens"] == targets
    assert result["eval_loss"] == pytest.approx(math.log(512), rel=1e-6)
    assert result["eval_bits_per_byte"] == pytest.approx(targets * 9 / TEXT_BYTES, rel=1e-6)
