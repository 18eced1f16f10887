"""PM-MinED: each token of a user model's vocabulary gets one token of a delta model's
(Cross-model Control, arXiv 2410.17599, Sec. 3.3; the public code's
`token_maps/mistral_llama_one2one.py`).

Strings are compared as the bytes each token adds to decoded text (`Tokenizer.pieces`), not as
vocabulary spellings: SentencePiece's `▁` and byte-level BPE's `Ġ` both become the space
byte, and a byte-fallback piece `<0xNN>` its one byte, so any two backends compare. Rules, in
order: special tokens map to the delta's token of the same role (BOS, EOS, pad, unknown) or
the same spelling; byte pieces map to the delta token of that one byte; an exact byte match
wins, a token of the same kind (byte piece or not) first, so identical tokenizers give the
identity; otherwise, among the delta tokens where one is a prefix of the other, the one at minimum
Levenshtein distance, lowest id on ties — for a prefix pair that distance is the difference
in length; a lone space never matches a token that is not all spaces. -1: no match.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import json
import logging
import os
import pathlib

import numpy as np
from etils import epath

from tinylm_jax.data import cache_lock
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.data.tokenizer_base import PieceKind
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

log = logging.getLogger(__name__)

EXACT, PREFIX, SPECIAL, UNMATCHED = "exact", "prefix", "special", "unmatched"


@dataclasses.dataclass(frozen=True)
class TokenMap:
    """`map_V`: user id -> delta id (-1: none); `match_V`: how each was matched; `distance_V`
    (0 for exact, special and byte matches; -1 when unmatched)."""

    user_fingerprint: str
    delta_fingerprint: str
    map_V: np.ndarray
    match_V: tuple[str, ...]
    distance_V: np.ndarray

    def report(self) -> dict:
        """Counts of each kind of match and the histogram of prefix-match distances."""
        counts = collections.Counter(self.match_V)
        prefix = self.distance_V[np.asarray(self.match_V) == PREFIX]
        return {
            "user_tokens": len(self.match_V),
            **{kind: counts.get(kind, 0) for kind in (EXACT, PREFIX, SPECIAL, UNMATCHED)},
            "prefix_distance_histogram": {
                str(d): int(n) for d, n in zip(*np.unique(prefix, return_counts=True), strict=True)
            },
        }

    def to_json(self) -> str:
        return json.dumps(
            {
                "user_fingerprint": self.user_fingerprint,
                "delta_fingerprint": self.delta_fingerprint,
                "map": self.map_V.tolist(),
                "match": list(self.match_V),
                "distance": self.distance_V.tolist(),
                "report": self.report(),
            }
        )


def build_map(user: Tokenizer, delta: Tokenizer) -> TokenMap:
    """The PM-MinED map of every user token (see the module docstring for the rules)."""
    by_kind: dict[PieceKind, dict[bytes, int]] = {PieceKind.NORMAL: {}, PieceKind.BYTE: {}}
    for i, (kind, raw) in enumerate(delta.pieces):
        if kind != PieceKind.SPECIAL and raw:
            by_kind[kind].setdefault(raw, i)  # lowest id first
    # Exact matches prefer a token of the same kind (a byte piece its byte piece, so identical
    # tokenizers give the identity); prefix relatives come from both kinds.
    by_bytes = {**by_kind[PieceKind.BYTE], **by_kind[PieceKind.NORMAL]}
    ordered = sorted(by_bytes)
    specials = _special_targets(user, delta)
    map_V = np.full(user.vocab_size, -1, np.int64)
    distance_V = np.full(user.vocab_size, -1, np.int64)
    match: list[str] = []
    for i, (kind, raw) in enumerate(user.pieces):
        exact = None
        if kind != PieceKind.SPECIAL and raw:
            other = PieceKind.BYTE if kind == PieceKind.NORMAL else PieceKind.NORMAL
            exact = by_kind[kind].get(raw, by_kind[other].get(raw))
        if kind == PieceKind.SPECIAL or not raw:
            target, how, distance = specials.get(i, -1), SPECIAL, 0
        elif exact is not None:
            target, how, distance = exact, EXACT, 0
        elif kind == PieceKind.BYTE:
            target, how, distance = -1, UNMATCHED, -1
        else:
            target, distance = _closest_prefix(raw, by_bytes, ordered)
            how = PREFIX
        if target < 0:
            how, distance = UNMATCHED, -1
        map_V[i], distance_V[i] = target, distance
        match.append(how)
    return TokenMap(user.fingerprint, delta.fingerprint, map_V, tuple(match), distance_V)


def _special_targets(user: Tokenizer, delta: Tokenizer) -> dict[int, int]:
    """User special id -> delta id: the same role, else the same spelling."""
    spelled = {
        delta.id_to_piece(i): i
        for i, (kind, _) in enumerate(delta.pieces)
        if kind == PieceKind.SPECIAL
    }
    targets = {
        i: spelled[user.id_to_piece(i)]
        for i, (kind, _) in enumerate(user.pieces)
        if kind == PieceKind.SPECIAL and user.id_to_piece(i) in spelled
    }
    for role in ("bos_id", "eos_id", "pad_id", "unk_id"):
        mine, theirs = getattr(user, role), getattr(delta, role)
        if mine is not None and theirs is not None and mine >= 0 and theirs >= 0:
            targets[mine] = theirs
    return targets


def _closest_prefix(
    raw: bytes, by_bytes: dict[bytes, int], ordered: list[bytes]
) -> tuple[int, int]:
    """(delta id, distance) of the best prefix relative of `raw`, or (-1, -1)."""
    all_spaces = raw.strip(b" ") == b""
    candidates = [raw[:n] for n in range(1, len(raw)) if raw[:n] in by_bytes]
    start = bisect.bisect_right(ordered, raw)  # the delta tokens that extend `raw` follow it
    for j in range(start, len(ordered)):
        if not ordered[j].startswith(raw):
            break
        candidates.append(ordered[j])
    best, best_distance = -1, -1
    for text in candidates:
        if text == b" " and not all_spaces:
            continue
        distance, target = abs(len(text) - len(raw)), by_bytes[text]
        if best < 0 or (distance, target) < (best_distance, best):
            best, best_distance = target, distance
    return best, best_distance


def write_map(token_map: TokenMap, path: epath.PathLike) -> None:
    write_atomically(epath.Path(path), token_map.to_json())


def read_map(path: epath.PathLike, user: Tokenizer, delta: Tokenizer) -> TokenMap:
    """A map file written by `write_map`, checked against both tokenizers' fingerprints."""
    path = epath.Path(path)
    if not path.exists():
        raise DataError(f"token map {path} not found; write one with `tinylm cmc map`")
    saved = json.loads(path.read_text())
    for side, tokenizer in (("user", user), ("delta", delta)):
        if saved.get(f"{side}_fingerprint") != tokenizer.fingerprint:
            raise DataError(
                f"token map {path} was built for another {side} tokenizer than {tokenizer.path}"
                " (fingerprints differ); rebuild it with `tinylm cmc map` or leave out "
                "--token_map to build it"
            )
    return TokenMap(
        saved["user_fingerprint"],
        saved["delta_fingerprint"],
        np.asarray(saved["map"], np.int64),
        tuple(saved["match"]),
        np.asarray(saved["distance"], np.int64),
    )


def cached_map(path: epath.PathLike, user: Tokenizer, delta: Tokenizer) -> TokenMap:
    """The map of `user` onto `delta`, read from `path` (a cache entry whose name the caller
    keys by both fingerprints) or built and written there once. Local entries are built under
    `cache_lock` (concurrent runs wait for one builder, then read its file); every write is
    atomic. A cache that cannot be written (read-only storage) only costs a rebuild next time."""
    path = epath.Path(path)
    if path.exists():
        return read_map(path, user, delta)
    local = "://" not in os.fspath(path)
    lock = (
        cache_lock.exclusive(pathlib.Path(path), "a token map")
        if local
        else contextlib.nullcontext()
    )
    try:
        with lock:
            if path.exists():
                return read_map(path, user, delta)
            token_map = build_map(user, delta)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_map(token_map, path)
            return token_map
    except OSError as e:  # the lock or the entry could not be written (read-only storage)
        log.warning("Could not cache the token map at %s (%s); building it in memory.", path, e)
        return build_map(user, delta)
