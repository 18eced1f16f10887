"""Tokenizers: one interface, two backends, one loader.

`load_tokenizer(path)` reads a SentencePiece `.model` (`tokenizer_sentencepiece`), a Hugging
Face `tokenizer.json` (`tokenizer_hf`), or a directory holding `tokenizer.model` (preferred) or
`tokenizer.json`, and dispatches on the file's contents, not its name. Everything that
tokenizes goes through the `Tokenizer` interface (`tokenizer_base`); this module is where the
rest of the package imports all of them from.
"""

from __future__ import annotations

import os

from etils import epath

from tinylm_jax.data import hub
from tinylm_jax.data.tokenizer_base import (
    HF_FILE,
    SP_FILE,
    IncrementalDecoder,
    Piece,
    PieceKind,
    Tokenizer,
)
from tinylm_jax.data.tokenizer_hf import (
    BYTE_LEVEL_CHARS,
    HF_GENERATION_FILE,
    HF_TOKEN_FILES,
    ROLES,
    HFTokenizer,
)
from tinylm_jax.data.tokenizer_sentencepiece import (
    BOS_ID,
    EOS_ID,
    MODEL_TYPES,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    train_tokenizer,
)
from tinylm_jax.errors import DataError

__all__ = [
    "BOS_ID",
    "BYTE_LEVEL_CHARS",
    "EOS_ID",
    "HF_FILE",
    "HF_GENERATION_FILE",
    "HF_TOKEN_FILES",
    "MODEL_TYPES",
    "PAD_ID",
    "ROLES",
    "SP_FILE",
    "UNK_ID",
    "HFTokenizer",
    "IncrementalDecoder",
    "Piece",
    "PieceKind",
    "SentencePieceTokenizer",
    "Tokenizer",
    "check_vocab",
    "load_tokenizer",
    "train_tokenizer",
]


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer in `path`: a file (SentencePiece model, or JSON: a tokenizer.json) or a
    directory holding `tokenizer.model` or `tokenizer.json`; local, gs://, or a Hugging Face
    Hub id (`org/name[@revision]`, fetched into or read from huggingface_hub's cache)."""
    resolved = hub.resolve(os.fspath(path), hub.TOKENIZER_FILES, "DataConfig.tokenizer")
    target = epath.Path(os.path.expanduser(resolved))
    if target.is_dir():
        found = [target / name for name in (SP_FILE, HF_FILE) if (target / name).exists()]
        if not found:
            raise DataError(
                f"{target} holds neither {SP_FILE} (SentencePiece) nor {HF_FILE} (Hugging Face "
                "tokenizers); point DataConfig.tokenizer at a directory or file holding one."
            )
        target = found[0]
    elif not target.is_file():
        raise DataError(
            f"Tokenizer {target} does not exist; fix DataConfig.tokenizer or set it to None to "
            "train one on the corpus."
        )
    data = target.read_bytes()
    if data[:1] == b"{":  # A serialized ModelProto starts with a field tag (0x0A), never '{'.
        names = (*HF_TOKEN_FILES, HF_GENERATION_FILE)
        configs = {
            n: (target.parent / n).read_bytes() for n in names if (target.parent / n).exists()
        }
        return HFTokenizer(data, configs, str(target))
    return SentencePieceTokenizer(data, str(target))


def check_vocab(tokenizer: Tokenizer, model_vocab_size: int) -> None:
    """Raises DataError when token ids could fall outside the model's embedding."""
    if tokenizer.vocab_size > model_vocab_size:
        raise DataError(
            f"Tokenizer {tokenizer.path or ''} has {tokenizer.vocab_size} pieces but the model "
            f"vocabulary has only {model_vocab_size}. Raise the model config vocab_size to at "
            f"least {tokenizer.vocab_size}, or use a smaller tokenizer (DataConfig.vocab_size / "
            "DataConfig.tokenizer)."
        )
