"""The tokenizer interface every backend implements, and what ids decode to.

Everything that tokenizes (packing, bits per byte, multiple choice, sampling, export,
compression) goes through `Tokenizer`; `tokenizer.load_tokenizer` picks the backend.
"""

from __future__ import annotations

import abc
import codecs
import enum
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np
from etils import epath

SP_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"
# A byte-fallback piece, `<0xNN>`, as SentencePiece and tokenizer.json both spell it.
BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class PieceKind(enum.IntEnum):
    """What an id contributes to decoded text."""

    NORMAL = 0  # its own bytes
    BYTE = 1  # a byte-fallback piece `<0xNN>`: one raw byte
    SPECIAL = 2  # control / unknown / unused / special added token: nothing


Piece = tuple[PieceKind, bytes]


class IncrementalDecoder:
    """Text of a growing id sequence, released only as complete UTF-8 characters.

    Byte-level BPE and byte fallback may split one character's bytes across tokens; `push`
    holds a partial character back until its last byte arrives. Invalid bytes become U+FFFD.
    """

    def __init__(self, pieces: Sequence[Piece]):
        self._pieces = pieces
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """The text completed by `token_id` (ids past the tokenizer decode to nothing)."""
        i = int(token_id)
        return self._utf8.decode(self._pieces[i][1] if 0 <= i < len(self._pieces) else b"")

    def flush(self) -> str:
        """An unfinished character at the end, as U+FFFD (empty when there is none)."""
        return self._utf8.decode(b"", final=True)


class Tokenizer(abc.ABC):
    """What the pipeline, eval, sampling and export need from a tokenizer.

    Attributes: `path` (the file it was read from, or None), `fingerprint` (sha256 hex of the
    backend and the files that fix its ids; keys the data cache and is checked against
    checkpoints), `vocab_size`, `bos_id`, `eos_id`, `pad_id` (ints) and `unk_id` (int, or None
    when the tokenizer has no unknown token).
    """

    file_name: ClassVar[str]  # the main file `save` writes
    path: str | None
    fingerprint: str
    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int | None

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""

    @abc.abstractmethod
    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Encodes many texts on native threads (order preserved); `num_threads` sizes
        SentencePiece's pool (the `tokenizers` library sizes its own)."""

    @abc.abstractmethod
    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of `ids`; special ids decode to nothing."""

    @abc.abstractmethod
    def id_to_piece(self, i: int) -> str | None:
        """The vocabulary entry of id `i`, as the backend spells it (None for an id a Hugging
        Face vocabulary skips)."""

    @abc.abstractmethod
    def save(self, directory: epath.PathLike) -> list[str]:
        """Writes the files `load_tokenizer(directory)` reads back; their names, main first."""

    @abc.abstractmethod
    def _pieces(self) -> Iterator[Piece]:
        """(kind, bytes in decoded text) of ids 0 .. vocab_size - 1."""

    @functools.cached_property
    def pieces(self) -> tuple[Piece, ...]:
        """[vocab_size] (kind, bytes): the raw bytes each id adds to decoded text (none for
        special ids), which bits per byte and byte-level models rely on."""
        return tuple(self._pieces())

    def incremental_decoder(self) -> IncrementalDecoder:
        return IncrementalDecoder(self.pieces)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, vocab_size={self.vocab_size})"
