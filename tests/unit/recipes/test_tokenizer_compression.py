"""Tokenizer compression: exact sizes, coverage, lossless round trips, id maps, the CLI."""

import pytest


@pytest.mark.parametrize(
    "arm,size",
    [("vocab_8k", 8192), ("vocab_16k", 16384), ("vocab_32k", 32768), ("vocab_48k", 49152)],
)
def test_ablation_arms(arm, size, gin_clean):
    from tinylm_jax.config import gin as config_lib

    config = config_lib.parse([f"ablations/tokenizer/{arm}.gin"])
    assert config.model.vocab_size == size
    assert config.data.tokenizer == f"runs/tokenizers/compressed_{size // 1024}k/tokenizer.model"
    config = config_lib.parse(["ablations/tokenizer/base.gin"])
    assert config.data.tokenizer == "runs/tokenizers/big/tokenizer.model"
    assert config.model.vocab_size == config.data.vocab_size > size  # The big tokenizer's size.
