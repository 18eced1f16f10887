"""A user model's text as a delta model with another tokenizer reads it (Cross-model Control
across vocabularies, arXiv 2410.17599, Sec. 3.3; the public code's `eval/chat_model.py`,
`chat_model_d`). Host-side and pure: token ids in, token ids and indices out.

Decoding (`extend_delta_ids`): after the user model emits a token, the delta reads the mapped
token when the PM-MinED match is exact (a special token: its same-role token); otherwise the
whole text so far (prompt and completion) is re-encoded with the delta's tokenizer, after its
BOS. The decoder then re-runs the delta from the first token that changed (`first_change`).

Teacher forcing (`align_row`, for `eval` and `score`) aligns by text offsets. Within a
document piece, each run of user tokens that add text (between special tokens) is decoded to
bytes and encoded once by the delta's tokenizer; special tokens map one to one through the
token map. User position j, whose prefix ends at byte offset e_j of its run, is shifted by the
delta's logits at the delta token of that run whose prefix ends at the same offset e_j: both
models have then read the same text and predict what follows it. When no delta token ends at
e_j (one straddles it), or the delta's tokens stop reproducing the run's bytes before e_j (a
normalizing tokenizer, a character cut at a row's end), position j gets a zero shift, as an
unmatched token does. A user special token is shifted by its mapped delta token's logits (zero
shift when it has none); a BOS that opens a piece reads as the delta's BOS.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from tinylm_jax.data.token_map import EXACT, SPECIAL, TokenMap
from tinylm_jax.data.tokenizer import PieceKind, Tokenizer


@dataclasses.dataclass(frozen=True)
class CrossVocab:
    """A user tokenizer, a delta tokenizer and the token map between them."""

    user: Tokenizer
    delta: Tokenizer
    token_map: TokenMap

    @functools.cached_property
    def appended_V(self) -> np.ndarray:
        """[V] the delta token decoding appends after each user token (an exact or special
        match), or -1 where the text is re-encoded instead."""
        kinds = np.asarray(self.token_map.match_V)
        one_to_one = (kinds == EXACT) | (kinds == SPECIAL)
        return np.where(one_to_one, self.token_map.map_V, -1)

    def adds_text(self, user_id: int) -> bool:
        kind, raw = self.piece(user_id)
        return kind != PieceKind.SPECIAL and bool(raw)

    def piece(self, user_id: int) -> tuple[PieceKind, bytes]:
        """A user id's piece; ids past the tokenizer (a model's padded vocabulary) add
        nothing."""
        pieces = self.user.pieces
        return pieces[user_id] if 0 <= user_id < len(pieces) else (PieceKind.SPECIAL, b"")

    def mapped(self, user_id: int) -> int:
        """The delta id of a user id (-1: none, or past the tokenizer)."""
        map_V = self.token_map.map_V
        return int(map_V[user_id]) if 0 <= user_id < len(map_V) else -1

    def map_for(self, vocab_size: int) -> np.ndarray:
        """[vocab_size] int32 user id -> delta id (-1: zero shift), the token map padded to
        a model's vocabulary."""
        map_V = np.full(vocab_size, -1, np.int32)
        map_V[: len(self.token_map.map_V)] = self.token_map.map_V
        return map_V


def prompt_delta_ids(cross: CrossVocab, prompt: str) -> list[int]:
    """The delta's tokens of a prompt: its BOS and the prompt's encoding."""
    return [cross.delta.bos_id, *cross.delta.encode(prompt)]


def extend_delta_ids(
    cross: CrossVocab, delta_ids: list[int], user_id: int, text: bytes
) -> list[int]:
    """The delta's tokens after the user model emits `user_id`: `delta_ids` plus its mapped
    token (an exact or special match), else the delta's BOS and its encoding of `text`, the
    whole text so far (prompt and completion, `user_id`'s bytes included; an unfinished
    character decodes to U+FFFD until its last byte arrives)."""
    target = int(cross.appended_V[user_id]) if 0 <= user_id < len(cross.appended_V) else -1
    if target >= 0:
        return [*delta_ids, target]
    return prompt_delta_ids(cross, text.decode("utf-8", errors="replace"))


def first_change(old: Sequence[int], new: Sequence[int]) -> int:
    """The first index where `new` differs from `old` (their common prefix's length)."""
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return i
    return min(len(old), len(new))


def _align_text_run(
    cross: CrossVocab, run: Sequence[int], first: int
) -> tuple[list[int], list[int]]:
    """(the delta's tokens of the run's text, for each user token of the run the index of the
    delta token whose prefix ends where its own does, counted from `first`; -1: none)."""
    pieces = [cross.piece(u)[1] for u in run]
    text = b"".join(pieces)
    encoded = cross.delta.encode(text.decode("utf-8", errors="replace"))
    delta_text = b"".join(cross.delta.pieces[d][1] for d in encoded)
    agreed = first_change(text, delta_text)  # offsets past it are not the same text
    ends: dict[int, int] = {}
    offset = 0
    for k, d in enumerate(encoded):
        offset += len(cross.delta.pieces[d][1])
        if offset <= agreed:
            ends[offset] = first + k  # a zero-byte delta token keeps the later index
    user_ends = np.cumsum([len(p) for p in pieces]).tolist()
    return encoded, [ends.get(e, -1) for e in user_ends]


def align_segment(cross: CrossVocab, user_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(the delta's tokens of one document piece, for each user position the index into them
    whose logits shift it, -1: zero shift); see the module docstring."""
    delta_ids: list[int] = []
    index: list[int] = []
    start = 0
    for end in range(len(user_ids) + 1):
        if end < len(user_ids) and cross.adds_text(int(user_ids[end])):
            continue
        if end > start:  # a run of text tokens ends here
            encoded, run_index = _align_text_run(cross, user_ids[start:end], len(delta_ids))
            delta_ids += encoded
            index += run_index
        if end < len(user_ids):
            token = int(user_ids[end])
            # A piece's first token, when it is the BOS, is the delta's BOS: a tokenizer
            # without one starts documents with its EOS, which the map sends to the EOS.
            opens = end == 0 and token == cross.user.bos_id
            target = cross.delta.bos_id if opens else cross.mapped(token)
            if target >= 0:
                delta_ids.append(target)
            index.append(len(delta_ids) - 1 if target >= 0 else -1)
        start = end + 1
    return delta_ids, index


@dataclasses.dataclass(frozen=True)
class AlignedRow:
    """One packed row in the delta's tokenization: its tokens, segment ids and positions
    (within each document piece, from 0), and `index_L`: the delta position whose logits
    shift each user position (-1: zero shift)."""

    tokens: list[int]
    segment_ids: list[int]
    positions: list[int]
    index_L: np.ndarray


def align_row(cross: CrossVocab, inputs_L: np.ndarray, segment_ids_L: np.ndarray) -> AlignedRow:
    """A packed row (segment 0: padding) in the delta's tokenization, piece by piece."""
    tokens: list[int] = []
    segments: list[int] = []
    positions: list[int] = []
    index_L = np.full(len(inputs_L), -1, np.int32)
    starts = np.flatnonzero(np.diff(segment_ids_L, prepend=-1) != 0)
    for start, end in zip(starts, [*starts[1:], len(inputs_L)], strict=True):
        segment = int(segment_ids_L[start])
        if segment == 0:
            continue
        delta_ids, index = align_segment(cross, inputs_L[start:end].tolist())
        offset = len(tokens)
        index_L[start:end] = [offset + i if i >= 0 else -1 for i in index]
        tokens += delta_ids
        segments += [segment] * len(delta_ids)
        positions += list(range(len(delta_ids)))
    return AlignedRow(tokens, segments, positions, index_L)


def stack_rows(rows: Sequence[AlignedRow], width: int, pad_id: int) -> dict[str, np.ndarray]:
    """The rows as arrays [B, width] (`delta_inputs`, `delta_segment_ids`, `delta_positions`;
    right-padded with segment 0) and `delta_index` [B, L]."""
    B = len(rows)
    out = {
        "delta_inputs": np.full((B, width), pad_id, np.int32),
        "delta_segment_ids": np.zeros((B, width), np.int32),
        "delta_positions": np.zeros((B, width), np.int32),
    }
    for r, row in enumerate(rows):
        n = len(row.tokens)
        out["delta_inputs"][r, :n] = row.tokens
        out["delta_segment_ids"][r, :n] = row.segment_ids
        out["delta_positions"][r, :n] = row.positions
    out["delta_index"] = np.stack([row.index_L for row in rows]).astype(np.int32)
    return out
