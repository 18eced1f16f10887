"""Compressing a SentencePiece model: pick pieces by corpus frequency and delete the rest
from its ModelProto (unigram, or BPE with merge replay; see `tokenizer_compression`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sentencepiece import sentencepiece_model_pb2

from tinylm_jax.recipes.pangu.piece_selection import (
    Compression,
    check_target,
    keep_frequent,
    merge_chain,
)

log = logging.getLogger(__name__)

# Generated protobuf code without stubs: its message classes (ModelProto, TrainerSpec) are built
# at import time, so mypy sees none of them and a ModelProto is typed `Any`.
sp_pb2: Any = sentencepiece_model_pb2
Piece = sp_pb2.ModelProto.SentencePiece
# Pieces that are kept whatever their frequency: the ids the pipeline relies on, pieces a
# user declared, and byte fallback (what makes the pruned model lossless).
MANDATORY_TYPES = (Piece.CONTROL, Piece.UNKNOWN, Piece.USER_DEFINED, Piece.BYTE)
SPACE = "\u2581"  # SentencePiece's whitespace symbol.


def load_model_proto(model: bytes) -> Any:
    """The ModelProto serialized in `model`."""
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model)
    return proto


def _bpe_merge_chain(text: str, scores: dict[str, float]) -> list[str] | None:
    """The pieces SentencePiece's BPE creates while encoding `text` alone, in order.

    Mirrors bpe_model.cc: merge the adjacent pair whose concatenation is a piece with the
    highest score (leftmost on ties).
    """

    def priority(left: str, right: str) -> float | None:
        score = scores.get(left + right)
        return None if score is None else -score

    return merge_chain(text, priority)


def select_pieces(
    proto: Any,
    counts: np.ndarray,
    vocab_size: int | None = None,
    coverage: float | None = None,
) -> tuple[np.ndarray, int, int]:
    """Boolean [V] mask of the pieces to keep, the mandatory count and BPE intermediates added.

    Exactly one of `vocab_size` (the exact size of the result) and `coverage` (the smallest
    frequency-ordered prefix whose kept pieces cover that fraction of corpus tokens) is given.
    Normal pieces are taken by descending count, ties by ascending id (unigram ids follow
    score, BPE ids follow merge order). `proto` is the model's ModelProto.
    """
    types = np.array([p.type for p in proto.pieces])
    # The whitespace symbol too: without it a space byte-falls back to the UTF-8 of '▁'
    # itself, which decodes as '▁', not ' '.
    kept = np.isin(types, MANDATORY_TYPES) | np.array([p.piece == SPACE for p in proto.pieces])
    mandatory = int(kept.sum())
    check_target(mandatory, len(types), counts, vocab_size, coverage)
    bpe = proto.trainer_spec.model_type == sp_pb2.TrainerSpec.BPE
    # BPE merges run over normal, user-defined and unused pieces (model_interface.cc).
    mergeable = (Piece.NORMAL, Piece.USER_DEFINED, Piece.UNUSED)
    scores = {p.piece: p.score for p in proto.pieces if p.type in mergeable} if bpe else {}
    index = {p.piece: i for i, p in enumerate(proto.pieces)}

    def needs(i: int) -> list[int] | None:
        if not bpe:
            return [i]
        chain = _bpe_merge_chain(proto.pieces[i].piece, scores)
        # Single characters need no merge; otherwise the chain ends with piece i.
        return None if chain is None else [index[p] for p in chain] + [i]

    normal = np.flatnonzero(types == Piece.NORMAL)
    order = normal[np.lexsort((normal, -counts[normal]))]
    intermediates = keep_frequent(kept, order, counts, needs, vocab_size, coverage)
    return kept, mandatory, intermediates


def prune_model(model: bytes, kept: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Deletes the pieces not in `kept` (bool [V]); returns the new model and id_map [V]."""
    proto = load_model_proto(model)
    keep_ids = np.flatnonzero(kept)
    id_map = np.full(len(proto.pieces), -1, np.int32)
    id_map[keep_ids] = np.arange(len(keep_ids), dtype=np.int32)
    pruned = sp_pb2.ModelProto()
    pruned.CopyFrom(proto)
    del pruned.pieces[:]
    pruned.pieces.extend(proto.pieces[int(i)] for i in keep_ids)
    spec = pruned.trainer_spec
    spec.vocab_size = len(keep_ids)
    for field in ("unk_id", "bos_id", "eos_id", "pad_id"):
        old = getattr(spec, field)
        if 0 <= old < len(id_map) and id_map[old] >= 0:
            setattr(spec, field, int(id_map[old]))
    if "self_test_data" in pruned.DESCRIPTOR.fields_by_name:
        pruned.ClearField("self_test_data")  # Its expected ids belong to the big model.
    return pruned.SerializeToString(), id_map


def compress(
    model: bytes,
    counts: np.ndarray,
    vocab_size: int | None = None,
    coverage: float | None = None,
) -> Compression:
    """Prunes the SentencePiece `model` given its corpus token `counts` [V]."""
    proto = load_model_proto(model)
    if not proto.trainer_spec.byte_fallback:
        log.warning(
            "The tokenizer has no byte fallback: text of deleted characters will encode as "
            "the unknown piece and not decode back."
        )
    kept, mandatory, intermediates = select_pieces(proto, counts, vocab_size, coverage)
    pruned, id_map = prune_model(model, kept)
    return Compression(
        model=pruned,
        id_map=id_map,
        coverage=float(counts[kept].sum() / counts.sum()),
        mandatory=mandatory,
        bpe_intermediates=intermediates,
    )
