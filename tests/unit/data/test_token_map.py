"""PM-MinED token maps on hand-made vocabularies: exact, prefix, minimum distance, the lone
space rule, special and byte tokens."""

import numpy as np

from tinylm_jax.data.token_map import EXACT, PREFIX, SPECIAL, UNMATCHED, build_map
from tinylm_jax.data.tokenizer_base import PieceKind

N, B, S = PieceKind.NORMAL, PieceKind.BYTE, PieceKind.SPECIAL


class Vocab:
    """What `build_map` reads of a tokenizer: pieces, spellings, roles, fingerprint."""

    def __init__(self, pieces, name, bos=0, eos=1):
        self.pieces = tuple((kind, text.encode()) for kind, text in pieces)
        self.spellings = [text or f"<special{i}>" for i, (_, text) in enumerate(pieces)]
        self.vocab_size, self.fingerprint, self.path = len(pieces), name, name
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = bos, eos, -1, None

    def id_to_piece(self, i):
        return self.spellings[i]


def test_identical_vocabularies_give_the_identity():
    vocab = Vocab([(S, ""), (S, ""), (B, "a"), (N, " the"), (N, "th"), (N, " ")], "v")
    token_map = build_map(vocab, vocab)
    np.testing.assert_array_equal(token_map.map_V, np.arange(6))
    assert token_map.match_V == (SPECIAL, SPECIAL, EXACT, EXACT, EXACT, EXACT)


def test_exact_prefix_minimum_distance_and_the_lone_space_rule():
    delta = Vocab(
        [
            (S, ""),
            (S, ""),
            (N, " "),
            (N, " th"),
            (N, " the"),
            (N, " thermal"),
            (N, "ab"),
            (N, "abcd"),
            (N, "  "),
        ],
        "delta",
    )
    user = Vocab(
        [
            (S, ""),
            (S, ""),
            (N, " the"),
            (N, " ther"),
            (N, " x"),
            (N, "abc"),
            (N, "   "),
            (N, "zz"),
            (B, "q"),
        ],
        "user",
        bos=1,
        eos=0,
    )
    token_map = build_map(user, delta)
    # Roles: user BOS (1) -> delta BOS (0), user EOS (0) -> delta EOS (1).
    assert token_map.map_V[:2].tolist() == [1, 0]
    assert token_map.map_V[2] == 4 and token_map.match_V[2] == EXACT
    # " ther": " th" (2), " the" (1) and " thermal" (3) are prefix relatives; " the" is closest.
    assert token_map.map_V[3] == 4 and token_map.distance_V[3] == 1
    # " x": only " " is a prefix relative, and a lone space never matches a non-space token.
    assert token_map.map_V[4] == -1 and token_map.match_V[4] == UNMATCHED
    # "abc": "ab" and "abcd" are both at distance 1; the lower id wins.
    assert token_map.map_V[5] == 6 and token_map.match_V[5] == PREFIX
    # "   " (all spaces) may match " " or "  "; "  " is closer.
    assert token_map.map_V[6] == 8
    assert token_map.map_V[7] == -1 and token_map.map_V[8] == -1
    report = token_map.report()
    assert report[EXACT] == 1 and report[PREFIX] == 3 and report[UNMATCHED] == 3
    assert report["prefix_distance_histogram"] == {"1": 3}


def test_the_map_cache_builds_once_then_reads_and_survives_read_only_storage(tmp_path, monkeypatch):
    from tinylm_jax.data import token_map as token_map_lib

    user = Vocab([(S, ""), (S, ""), (N, " the"), (N, "ab")], "user")
    delta = Vocab([(S, ""), (S, ""), (N, " the"), (N, "abc")], "delta")
    entry = tmp_path / "token_maps" / "user-delta.json"
    built = token_map_lib.cached_map(entry, user, delta)
    assert entry.exists() and built.map_V.tolist() == [0, 1, 2, 3]

    def refuse(*_):
        raise AssertionError("the cached map was rebuilt")

    monkeypatch.setattr(token_map_lib, "build_map", refuse)
    assert token_map_lib.cached_map(entry, user, delta).to_json() == built.to_json()
    monkeypatch.undo()

    def read_only(*_):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(token_map_lib, "write_map", read_only)
    elsewhere = tmp_path / "other" / "user-delta.json"
    assert token_map_lib.cached_map(elsewhere, user, delta).to_json() == built.to_json()
    assert not elsewhere.exists()
