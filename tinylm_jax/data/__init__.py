"""Data pipeline: corpora (TFDS/ArrayRecord), SentencePiece, packing, Grain loaders."""

from tinylm_jax.data.config import DataConfig
from tinylm_jax.data.pipeline import (
    PreparedData,
    check_vocab,
    make_eval_iterator,
    make_train_iterator,
    prepare_data,
)
from tinylm_jax.data.tokenizer import Tokenizer

__all__ = [
    "DataConfig",
    "PreparedData",
    "Tokenizer",
    "check_vocab",
    "make_eval_iterator",
    "make_train_iterator",
    "prepare_data",
]
