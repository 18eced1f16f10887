"""Tokenizers: one interface, two backends, one loader.

`load_tokenizer(path)` reads a SentencePiece `.model`, a Hugging Face `tokenizer.json` (the
Rust `tokenizers` library; no `transformers` at run time), or a directory holding
`tokenizer.model` (preferred) or `tokenizer.json`, and dispatches on the file's contents, not
its name. Everything that tokenizes (packing, bits per byte, multiple choice, sampling, export,
compression) goes through the `Tokenizer` interface.

SentencePiece models trained here (`train_tokenizer`) use fixed special ids: pad=0, bos=1,
eos=2, unk=3. Byte fallback is on and normalization is the identity (no whitespace collapsing,
no dummy prefix), so `decode(encode(text)) == text` for any UTF-8 text, code included. The one
exception is U+2581 ('▁'), which SentencePiece uses for spaces and therefore decodes to ' '.

A `tokenizer.json` declares no roles for its tokens; they come from the files beside it:
`special_tokens_map.json`, then `tokenizer_config.json` (`bos_token`, `eos_token`, ...), then
`generation_config.json` (`bos_token_id`, ...; the first of a list). An EOS is required. A
tokenizer without a BOS starts documents with its EOS (as GPT-2 does); without a pad token,
padding uses the EOS id (padding is always masked out); without an unk token `unk_id` is None
(byte-level BPE needs none). Special-token strings inside text encode as text, as in
SentencePiece, so no document can inject an EOS.
"""

from __future__ import annotations

import abc
import codecs
import enum
import functools
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import ClassVar

import numpy as np
import sentencepiece as spm
import tokenizers
from etils import epath

from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

log = logging.getLogger(__name__)

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MODEL_TYPES = ("unigram", "bpe")
SP_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"
# Beside tokenizer.json: the files that declare its special tokens, in the order consulted.
HF_TOKEN_FILES = ("special_tokens_map.json", "tokenizer_config.json")
HF_GENERATION_FILE = "generation_config.json"
ROLES = ("bos", "eos", "pad", "unk")
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class PieceKind(enum.IntEnum):
    """What an id contributes to decoded text."""

    NORMAL = 0  # its own bytes
    BYTE = 1  # a byte-fallback piece `<0xNN>`: one raw byte
    SPECIAL = 2  # control / unknown / unused / special added token: nothing


Piece = tuple[PieceKind, bytes]


def _byte_level_chars() -> dict[str, int]:
    """Byte-level BPE's alphabet, character -> byte: printable Latin-1 bytes stand for
    themselves and the other 68 bytes for U+0100 onwards, in byte order (Radford et al. 2019,
    "Language Models are Unsupervised Multitask Learners", Sec. 2.2; GPT-2's encoder)."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    chars, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(0x100 + shifted)] = byte
            shifted += 1
    return chars


BYTE_LEVEL_CHARS = _byte_level_chars()


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
    def id_to_piece(self, i: int) -> str:
        """The vocabulary entry of id `i`, as the backend spells it."""

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


class SentencePieceTokenizer(Tokenizer):
    """A loaded SentencePiece model."""

    file_name = SP_FILE

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
            match = _BYTE_PIECE.match(piece)
            if sp.is_byte(i) or match:
                yield PieceKind.BYTE, bytes([int(match.group(1), 16)])
            else:
                yield PieceKind.NORMAL, piece.replace("\u2581", " ").encode("utf-8")

    def __reduce__(self):
        # Picklable (e.g. for Grain worker processes) via the model bytes.
        return SentencePieceTokenizer, (self._proto, self.path)


def _decoder_types(decoder: Mapping | None) -> set[str]:
    if not decoder:
        return set()
    if decoder.get("type") == "Sequence":
        return set().union(*(_decoder_types(d) for d in decoder.get("decoders", [])))
    return {decoder.get("type")}


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json` (BPE, byte-level or with byte fallback; Unigram;
    WordLevel) and the special tokens declared beside it (see the module docstring)."""

    file_name = HF_FILE

    def __init__(
        self,
        tokenizer_json: bytes,
        config_files: Mapping[str, bytes] | None = None,
        path: str | None = None,
    ):
        where = path or "<bytes>"
        self._json = bytes(tokenizer_json)
        self._config_files = dict(config_files or {})
        try:
            self._spec = json.loads(self._json)
            self._tok = tokenizers.Tokenizer.from_str(self._json.decode("utf-8"))
        except Exception as e:  # json, UTF-8 and the Rust parser's errors alike
            raise DataError(
                f"Tokenizer {where} is not a valid Hugging Face tokenizer.json ({e}); point "
                "DataConfig.tokenizer at an intact tokenizer.json, a SentencePiece .model or "
                "a directory holding one."
            ) from e
        model_type = self._spec.get("model", {}).get("type")
        if model_type not in ("BPE", "Unigram", "WordLevel"):
            raise DataError(
                f"Tokenizer {where}: model type {model_type!r} is not supported (BPE, Unigram "
                "and WordLevel are); WordPiece's decoder inserts spaces, so its ids have no "
                "fixed bytes."
            )
        self._tok.encode_special_tokens = True  # "<|endoftext|>" in text stays text
        self.path = path
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(vocab.values()) + 1 if vocab else 0
        self._declared = self._declared_ids(where)
        if "eos" not in self._declared:
            raise DataError(
                f"Tokenizer {where}: no EOS token is declared; packing ends every document with "
                "one. Write a tokenizer_config.json beside it naming one, e.g. "
                '{"eos_token": "<|endoftext|>"} (and "bos_token" if the tokenizer has one).'
            )
        self.eos_id = self._declared["eos"]
        self.bos_id = self._declared.get("bos", self.eos_id)
        self.pad_id = self._declared.get("pad", self.eos_id)
        self.unk_id = self._declared.get("unk")
        ids = {role: self._declared.get(role) for role in ROLES}
        digest = hashlib.sha256(b"huggingface-tokenizers\0" + self._json + b"\0")
        digest.update(json.dumps(ids, sort_keys=True).encode())
        self.fingerprint = digest.hexdigest()

    def _config(self, name: str, where: str) -> dict:
        if name not in self._config_files:
            return {}
        try:
            config = json.loads(self._config_files[name])
        except (ValueError, UnicodeDecodeError) as e:
            raise DataError(f"{name} beside tokenizer {where} is not valid JSON ({e})") from e
        if not isinstance(config, dict):
            raise DataError(f"{name} beside tokenizer {where} is not a JSON object")
        return config

    def _declared_ids(self, where: str) -> dict[str, int]:
        """Role -> id of every special token the files beside tokenizer.json declare."""
        declared: dict[str, int] = {}
        configs = {name: self._config(name, where) for name in HF_TOKEN_FILES}
        generation = self._config(HF_GENERATION_FILE, where)
        for role in ROLES:
            for name, config in configs.items():
                token = config.get(f"{role}_token")
                token = token.get("content") if isinstance(token, dict) else token
                if isinstance(token, str):
                    token_id = self._tok.token_to_id(token)
                    if token_id is None:
                        raise DataError(
                            f"{name} beside tokenizer {where}: {role}_token {token!r} is not "
                            "in the tokenizer's vocabulary; fix or remove that entry."
                        )
                    declared[role] = token_id
                    break
            else:
                token_id = generation.get(f"{role}_token_id")
                token_id = token_id[0] if isinstance(token_id, list) and token_id else token_id
                if isinstance(token_id, int) and 0 <= token_id < self.vocab_size:
                    declared[role] = token_id
        return declared

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self._tok.id_to_token(int(i))

    @property
    def spec(self) -> dict:
        """The parsed tokenizer.json (a copy)."""
        return json.loads(self._json)

    @property
    def config_files(self) -> dict[str, bytes]:
        """The special-token files it was read with (name -> bytes)."""
        return dict(self._config_files)

    @property
    def byte_level(self) -> bool:
        """Whether ids decode through byte-level BPE's alphabet (GPT-2 / Llama 3 style)."""
        return "ByteLevel" in _decoder_types(self._spec.get("decoder"))

    def _saved_tokenizer_config(self) -> dict:
        """tokenizer_config.json as `save` writes it: the original's entries, the generic
        fast class unless it names one, and every resolved special token by its string."""
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **self._config("tokenizer_config.json", self.path or "<bytes>"),
        }
        for role, token_id in self._declared.items():
            config[f"{role}_token"] = self._tok.id_to_token(token_id)
        return config

    def save(self, directory: epath.PathLike) -> list[str]:
        directory = epath.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / HF_FILE, self._json)
        config = json.dumps(self._saved_tokenizer_config(), indent=2, ensure_ascii=False) + "\n"
        write_atomically(directory / "tokenizer_config.json", config)
        names = [HF_FILE, "tokenizer_config.json"]
        if "special_tokens_map.json" in self._config_files:
            write_atomically(
                directory / "special_tokens_map.json", self._config_files["special_tokens_map.json"]
            )
            names.append("special_tokens_map.json")
        return names

    def _pieces(self) -> Iterator[Piece]:
        added = {t["id"]: t for t in self._spec.get("added_tokens", [])}
        byte_level = self.byte_level
        byte_fallback = bool(self._spec["model"].get("byte_fallback"))
        for i in range(self.vocab_size):
            token = self._tok.id_to_token(i)
            if token is None or i == self.unk_id or added.get(i, {}).get("special"):
                yield PieceKind.SPECIAL, b""
            elif byte_level:
                # The decoder maps every token (added ones too) through the alphabet and keeps
                # characters outside it as they are.
                yield (
                    PieceKind.NORMAL,
                    b"".join(
                        bytes([BYTE_LEVEL_CHARS[c]]) if c in BYTE_LEVEL_CHARS else c.encode()
                        for c in token
                    ),
                )
            elif i in added:
                yield PieceKind.NORMAL, token.encode("utf-8")
            elif byte_fallback and (match := _BYTE_PIECE.match(token)):
                yield PieceKind.BYTE, bytes([int(match.group(1), 16)])
            else:
                yield PieceKind.NORMAL, token.replace("\u2581", " ").encode("utf-8")

    def __reduce__(self):
        return HFTokenizer, (self._json, self._config_files, self.path)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer in `path`: a file (SentencePiece model, or JSON: a tokenizer.json) or a
    directory holding `tokenizer.model` or `tokenizer.json`; local or gs://."""
    path = epath.Path(os.path.expanduser(os.fspath(path)))
    if path.is_dir():
        found = [path / name for name in (SP_FILE, HF_FILE) if (path / name).exists()]
        if not found:
            raise DataError(
                f"{path} holds neither {SP_FILE} (SentencePiece) nor {HF_FILE} (Hugging Face "
                "tokenizers); point DataConfig.tokenizer at a directory or file holding one."
            )
        path = found[0]
    elif not path.is_file():
        raise DataError(
            f"Tokenizer {path} does not exist; fix DataConfig.tokenizer or set it to None to "
            "train one on the corpus."
        )
    data = path.read_bytes()
    if data[:1] == b"{":  # A serialized ModelProto starts with a field tag (0x0A), never '{'.
        names = (*HF_TOKEN_FILES, HF_GENERATION_FILE)
        configs = {n: (path.parent / n).read_bytes() for n in names if (path.parent / n).exists()}
        return HFTokenizer(data, configs, str(path))
    return SentencePieceTokenizer(data, str(path))


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


def check_vocab(tokenizer: Tokenizer, model_vocab_size: int) -> None:
    """Raises DataError when token ids could fall outside the model's embedding."""
    if tokenizer.vocab_size > model_vocab_size:
        raise DataError(
            f"Tokenizer {tokenizer.path or ''} has {tokenizer.vocab_size} pieces but the model "
            f"vocabulary has only {model_vocab_size}. Raise the model config vocab_size to at "
            f"least {tokenizer.vocab_size}, or use a smaller tokenizer (DataConfig.vocab_size / "
            "DataConfig.tokenizer)."
        )
