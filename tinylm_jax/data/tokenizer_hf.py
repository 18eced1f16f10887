"""The Hugging Face backend: a `tokenizer.json` (the Rust `tokenizers` library; no
`transformers` at run time) and the special tokens declared beside it.

A `tokenizer.json` declares no roles for its tokens; they come from the files beside it:
`special_tokens_map.json`, then `tokenizer_config.json` (`bos_token`, `eos_token`, ...), then
`generation_config.json` (`bos_token_id`, ...; the first of a list). An EOS is required. A
tokenizer without a BOS starts documents with its EOS (as GPT-2 does); without a pad token,
padding uses the EOS id (padding is always masked out); without an unk token `unk_id` is None
(byte-level BPE needs none). Special-token strings inside text encode as text, as in
SentencePiece, so no document can inject an EOS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import tokenizers
from etils import epath

from tinylm_jax.data.tokenizer_base import BYTE_PIECE, HF_FILE, Piece, PieceKind, Tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically

# Beside tokenizer.json: the files that declare its special tokens, in the order consulted.
HF_TOKEN_FILES = ("special_tokens_map.json", "tokenizer_config.json")
HF_GENERATION_FILE = "generation_config.json"
ROLES = ("bos", "eos", "pad", "unk")


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


def _decoder_types(decoder: Mapping | None) -> set[str | None]:
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

    def id_to_piece(self, i: int) -> str | None:
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
            elif byte_fallback and (match := BYTE_PIECE.match(token)):
                yield PieceKind.BYTE, bytes([int(match.group(1), 16)])
            else:
                yield PieceKind.NORMAL, token.replace("\u2581", " ").encode("utf-8")

    def __reduce__(self):
        return HFTokenizer, (self._json, self._config_files, self.path)


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, directory: epath.PathLike) -> None:
    """Trains a GPT-2-style byte-level BPE `tokenizer.json` of `vocab_size` tokens (the 256
    byte symbols, merges and two special tokens) on `texts` into `directory`, with a
    `tokenizer_config.json` declaring its EOS `<|endoftext|>` and pad `<|pad|>` and no BOS
    (documents start with the EOS, as GPT-2's do)."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    write_atomically(directory / HF_FILE, tokenizer.to_str())
    config = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "bos_token": None}
    write_atomically(directory / "tokenizer_config.json", json.dumps(config))
