"""Hugging Face tokenizer files for a SentencePiece model: tokenizer.json + tokenizer_config.json.

(A tokenizer that is a `tokenizer.json` already exports as itself: `HFTokenizer.save`.)

transformers 5's `LlamaTokenizer` is a BPE-only class that re-derives merges from a
`tokenizer.model`, so it cannot reproduce a unigram model (ours are unigram by default). We
therefore write the `tokenizers` serialization of the very same model (`tokenizer.json`:
Unigram or BPE pieces and scores, identity normalization, a dummy-prefix space only if the
SentencePiece model adds one (ours do not; Llama's does), byte fallback) and name the generic
`PreTrainedTokenizerFast` class (transformers 4.x and 5.x both load `tokenizer.json` verbatim
through it), with Llama's settings: BOS added, EOS not, special-token strings in text read as
text. The SentencePiece `tokenizer.model` is written too, for tools that want it.

What differs from SentencePiece: where two segmentations score the same up to rounding
(e.g. permutations of whitespace pieces in a long run of spaces), SentencePiece (float32) and
`tokenizers` (float64) may pick different ones; decoding gives the same text either way. Text
spelling a control or byte piece (`<s>`, `<0x41>`) whose characters are not all pieces of the
vocabulary encodes to that piece in `tokenizers` (its unknown-character penalty is relative to
the lowest score), while SentencePiece spells it in byte pieces. And a run of byte pieces that
is not valid UTF-8 (only a model's output can produce one) decodes to one U+FFFD per byte in
`tokenizers`, while SentencePiece keeps the valid parts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from tinylm_jax.data.tokenizer import SentencePieceTokenizer
from tinylm_jax.errors import DataError

# SentencePiece piece types (sentencepiece_model.proto).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_UNIGRAM, _BPE = 1, 2
# SentencePiece never matches byte/control/unused pieces against text; `tokenizers` would,
# so they get a score no real segmentation can lose to.
_UNMATCHABLE_SCORE = -1e6


def _proto(tokenizer: SentencePieceTokenizer) -> Any:  # an sp_pb2.ModelProto (no stubs)
    proto = sp_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(tokenizer.proto)
    return proto


def tokenizer_json(tokenizer: SentencePieceTokenizer) -> dict:
    """The `tokenizers` library's serialization of `tokenizer` (a SentencePiece model)."""
    proto = _proto(tokenizer)
    norm = proto.normalizer_spec
    if norm.precompiled_charsmap or norm.remove_extra_whitespaces:
        raise DataError(
            f"{tokenizer.path}: SentencePiece normalization {norm.name!r} (whitespace folding: "
            f"{norm.remove_extra_whitespaces}) has no exact tokenizer.json equivalent; only "
            "identity-normalized tokenizers (as `tinylm tokenizer train` makes, and Llama's) export"
        )
    pieces = list(proto.pieces)
    model = _model(tokenizer, proto.trainer_spec, pieces)
    special = [
        {
            "id": i,
            "content": p.piece,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": p.type != _USER_DEFINED,
        }
        for i, p in enumerate(pieces)
        if p.type in (_CONTROL, _UNKNOWN, _USER_DEFINED)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        # SentencePiece's dummy prefix goes before the text even when it starts with a space,
        # unlike Metaspace's prepend_scheme, which skips such text.
        "normalizer": {"type": "Prepend", "prepend": "\u2581"} if norm.add_dummy_prefix else None,
        "pre_tokenizer": {
            "type": "Metaspace",
            "replacement": "\u2581",
            "prepend_scheme": "never",
            "split": False,
        },
        "post_processor": _bos_post_processor(tokenizer),
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ]
            + (
                [{"type": "Strip", "content": " ", "start": 1, "stop": 0}]
                if norm.add_dummy_prefix
                else []
            ),
        },
        "model": model,
    }


def _model(tokenizer: SentencePieceTokenizer, spec: Any, pieces: list) -> dict:
    """tokenizer.json's `model`: the SentencePiece model's Unigram or BPE pieces (`spec`: its
    sp_pb2.TrainerSpec)."""
    matchable = (_NORMAL, _USER_DEFINED)
    if spec.model_type == _UNIGRAM:
        return {
            "type": "Unigram",
            "unk_id": spec.unk_id,
            "vocab": [
                [p.piece, p.score if p.type in matchable else _UNMATCHABLE_SCORE] for p in pieces
            ],
            "byte_fallback": spec.byte_fallback,
        }
    if spec.model_type == _BPE:
        return {
            "type": "BPE",
            "dropout": None,
            "unk_token": spec.unk_piece,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": spec.byte_fallback,
            "ignore_merges": False,
            "vocab": {p.piece: i for i, p in enumerate(pieces)},
            "merges": _bpe_merges(pieces),
        }
    raise DataError(
        f"{tokenizer.path}: SentencePiece model type {spec.model_type} "
        "(not unigram or BPE) cannot be exported"
    )


def _bos_post_processor(tokenizer: SentencePieceTokenizer) -> dict:
    """A post-processor that starts every sequence with BOS, as Llama's tokenizer does."""
    bos = tokenizer.id_to_piece(tokenizer.bos_id)
    return {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [
            {"SpecialToken": {"id": bos, "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": bos, "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {bos: {"id": bos, "ids": [tokenizer.bos_id], "tokens": [bos]}},
    }


def _bpe_merges(pieces) -> list[list[str]]:
    """Merges ranked like SentencePiece's BPE: by the merged piece's rank (its id)."""
    vocab = {p.piece: i for i, p in enumerate(pieces) if p.type == _NORMAL}
    merges = []
    for piece, rank in vocab.items():
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))]
        splits = [(a, b) for a, b in splits if a in vocab and b in vocab]
        merges += [(rank, vocab[a], vocab[b], a, b) for a, b in splits]
    return [[a, b] for *_, a, b in sorted(merges)]


def tokenizer_config(tokenizer: SentencePieceTokenizer, model_max_length: int) -> dict:
    piece = tokenizer.id_to_piece
    dummy_prefix = _proto(tokenizer).normalizer_spec.add_dummy_prefix
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": piece(tokenizer.bos_id),
        "eos_token": piece(tokenizer.eos_id),
        "unk_token": piece(tokenizer.unk_id),
        "pad_token": piece(tokenizer.pad_id),
        "add_bos_token": True,
        "add_eos_token": False,
        "add_prefix_space": dummy_prefix,
        "legacy": False,
        # SentencePiece reads "<s>" in text as characters, never as the control token.
        "split_special_tokens": True,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "padding_side": "left",
    }


def write_hf_tokenizer(
    tokenizer: SentencePieceTokenizer, out_dir: Path, model_max_length: int
) -> list[str]:
    """Writes tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    (out_dir / "tokenizer.model").write_bytes(tokenizer.proto)
    config = tokenizer_config(tokenizer, model_max_length)
    files = {
        "tokenizer.json": tokenizer_json(tokenizer),
        "tokenizer_config.json": config,
        "special_tokens_map.json": {
            k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")
        },
    }
    for name, content in files.items():
        (out_dir / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return ["tokenizer.model", *files]
