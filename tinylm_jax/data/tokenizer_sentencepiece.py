"""The SentencePiece backend: a loaded `.model`, and training one on a corpus.

SentencePiece models trained here (`train_tokenizer`) use fixed special ids: pad=0, bos=1,
eos=2, unk=3. Byte fallback is on and normalization is the identity (no whitespace collapsing,
no dummy prefix), so `decode(encode(text)) == text` for any UTF-8 text, code included. The one
exception is U+2581 ('▁'), which SentencePiece uses for spaces and therefore decodes to ' '.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm
from etils import epath

from tinylm_jax.data.tokenizer_base import BYTE_PIECE, SP_FILE, Piece, PieceKind, Tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

log = logging.getLogger(__name__)

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe")


class SentencePieceTokenizer(Tokenizer):
    """A loaded SentencePiece model."""

    file_name = SP_FILE
    unk_id: int  # SentencePiece reports a missing unknown piece as -1, never None.

    def __init__(self, model_proto: bytes, path: str | None = None):
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        where = path or "<bytes>"
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except Exception as e:  # SentencePiece raises RuntimeError/OSError variants.
            raise DataError(
                f"Tokenizer {where} is not a valid SentencePiece model ({e}), nor JSON (a "
                "tokenizer.json); point DataConfig.tokenizer at a .model file, a "
                "tokenizer.json or a directory holding one, or set it to None to train one."
            ) from e
        self.path = path
        self.fingerprint = hashlib.sha256(self._proto).hexdigest()
        self.vocab_size = self._sp.get_piece_size()
        self.bos_id = self._sp.bos_id()
        self.eos_id = self._sp.eos_id()
        self.unk_id = self._sp.unk_id()
        # Models without a pad piece pad with id 0; padding is always masked out
        # (segment 0, weight 0), so any in-vocabulary id works.
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else 0
        if self.bos_id < 0 or self.eos_id < 0:
            raise DataError(
                f"Tokenizer {where} has no BOS/EOS pieces (bos={self.bos_id}, "
                f"eos={self.eos_id}); packing needs both. Train one with DataConfig.tokenizer=None."
            )

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        return self._sp.encode(list(texts), num_threads=num_threads or os.cpu_count() or 1)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        return self._sp.decode([int(i) for i in ids])

    @property
    def proto(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._proto

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def save(self, directory: epath.PathLike) -> list[str]:
        epath.Path(directory).mkdir(parents=True, exist_ok=True)
        write_atomically(epath.Path(directory) / SP_FILE, self._proto)
        return [SP_FILE]

    def _pieces(self) -> Iterator[Piece]:
        sp = self._sp
        for i in range(self.vocab_size):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                yield PieceKind.SPECIAL, b""
                continue
            piece = sp.id_to_piece(i)
            match = BYTE_PIECE.match(piece)
            if sp.is_byte(i) or match:
                # SentencePiece refuses to load a model with a byte piece not spelled <0xXX>.
                assert match is not None
                yield PieceKind.BYTE, bytes([int(match.group(1), 16)])
            else:
                yield PieceKind.NORMAL, piece.replace("\u2581", " ").encode("utf-8")

    def __reduce__(self):
        # Picklable (e.g. for Grain worker processes) via the model bytes.
        return SentencePieceTokenizer, (self._proto, self.path)


def _training_sentences(texts: Iterable[str], max_chars: int, chunk_chars: int) -> Iterator[str]:
    """Cuts documents into line-aligned chunks (SentencePiece drops overlong inputs).

    Chunks keep their newlines, so '\\n' and indentation become pieces.
    """
    total = 0
    for text in texts:
        buf: list[str] = []
        size = 0
        for line in text.splitlines(keepends=True):
            while len(line) > chunk_chars:  # Minified / generated lines.
                yield line[:chunk_chars]
                line = line[chunk_chars:]
            buf.append(line)
            size += len(line)
            if size >= chunk_chars:
                yield "".join(buf)
                buf, size = [], 0
        if buf:
            yield "".join(buf)
        total += len(text)
        if total >= max_chars:
            return


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    *,
    character_coverage: float = 0.9995,
    split_digits: bool = True,
    byte_fallback: bool = True,
    input_sentence_size: int = 100_000,
    max_chars: int = 50_000_000,
    num_threads: int | None = None,
) -> bytes:
    """Trains a SentencePiece model on `texts`; returns the serialized model.

    At most `max_chars` characters are read and `input_sentence_size` chunks of
    ~1,000 characters are sampled, which keeps training to tens of seconds on
    two cores whatever the corpus size.
    """
    if model_type not in MODEL_TYPES:
        raise DataError(
            f"DataConfig.tokenizer_model_type must be one of {MODEL_TYPES}; got {model_type!r}."
        )
    if byte_fallback and vocab_size < 260:
        raise DataError(
            f"DataConfig.vocab_size={vocab_size} is too small: byte fallback alone needs 256 "
            "byte pieces plus 4 special ids; use at least 260."
        )
    if not 0 < character_coverage <= 1:
        raise DataError(
            f"DataConfig.tokenizer_character_coverage must be in (0, 1]; got {character_coverage}."
        )
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_sentences(texts, max_chars, chunk_chars=1000),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=byte_fallback,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            split_digits=split_digits,
            allow_whitespace_only_pieces=True,
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            normalization_rule_name="identity",
            character_coverage=character_coverage,
            # A small corpus may not support the requested size; take what it has
            # (check_vocab only fails when the tokenizer is *larger* than the model).
            hard_vocab_limit=False,
            max_sentence_length=16384,  # Bytes; chunks stay under 2,000 characters.
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=num_threads or os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise DataError(
            f"SentencePiece training failed ({e}). With a small corpus lower "
            "DataConfig.vocab_size, or provide a trained model via DataConfig.tokenizer."
        ) from e
    proto = model.getvalue()
    log.info(
        "Trained a %s tokenizer with %d pieces.",
        model_type,
        SentencePieceTokenizer(proto).vocab_size,
    )
    return proto
