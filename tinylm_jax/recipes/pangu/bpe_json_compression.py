"""Compressing a byte-level BPE tokenizer.json (GPT-2, Llama 3): keep the byte and added
tokens and the most frequent tokens with their merge intermediates, then renumber the
vocabulary, merges and special-token ids (see `tokenizer_compression`)."""

from __future__ import annotations

import json

import numpy as np

from tinylm_jax.data.tokenizer import BYTE_LEVEL_CHARS, HF_GENERATION_FILE, ROLES, HFTokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.recipes.pangu.piece_selection import (
    Compression,
    check_target,
    keep_frequent,
    merge_chain,
)


def _byte_level_merge_chain(token: str, ranks: dict[tuple[str, str], int]) -> list[str] | None:
    """The tokens byte-level BPE creates while encoding `token`'s own characters, in order:
    the adjacent pair of lowest merge rank is merged first (leftmost on ties)."""
    return merge_chain(token, lambda left, right: ranks.get((left, right)))


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    """A merge as tokenizer.json spells it: ["a", "b"] (current) or "a b" (older files)."""
    first, second = merge.split(" ", 1) if isinstance(merge, str) else merge
    return first, second


def _remap_processor(processor: dict | None, id_map: np.ndarray) -> None:
    """Rewrites the special-token ids a post-processor adds (in place)."""
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _remap_processor(inner, id_map)
    elif kind == "TemplateProcessing":
        for special in processor.get("special_tokens", {}).values():
            special["ids"] = [int(id_map[i]) for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            processor[key][1] = int(id_map[processor[key][1]])


def _remap_config_files(files: dict[str, bytes], id_map: np.ndarray) -> dict[str, bytes]:
    """The special-token files with their ids renumbered (`added_tokens_decoder` keys of
    tokenizer_config.json, `*_token_id` of generation_config.json)."""
    files = dict(files)

    def new_id(i):
        return [new_id(j) for j in i] if isinstance(i, list) else int(id_map[i])

    if "tokenizer_config.json" in files:
        config = json.loads(files["tokenizer_config.json"])
        if "added_tokens_decoder" in config:
            config["added_tokens_decoder"] = {
                str(new_id(int(i))): token for i, token in config["added_tokens_decoder"].items()
            }
        files["tokenizer_config.json"] = json.dumps(config, indent=2).encode()
    if HF_GENERATION_FILE in files:
        config = json.loads(files[HF_GENERATION_FILE])
        for role in ROLES:
            if config.get(f"{role}_token_id") is not None:
                config[f"{role}_token_id"] = new_id(config[f"{role}_token_id"])
        files[HF_GENERATION_FILE] = json.dumps(config, indent=2).encode()
    return files


def compress_bpe_json(
    tokenizer: HFTokenizer,
    counts: np.ndarray,
    vocab_size: int | None = None,
    coverage: float | None = None,
) -> tuple[Compression, HFTokenizer]:
    """Prunes a byte-level BPE tokenizer.json given its corpus token `counts` [V].

    Keeps the added (special) tokens and the 256 byte tokens, then the most frequent tokens
    (ties by ascending id), each with the tokens its merges go through (replaying the merge
    ranks on the token's own characters); keeps the merges whose two parts and result are all
    kept, in their order, and renumbers the kept tokens in id order. Every string still
    encodes (down to byte tokens) and decodes back exactly; text whose old segmentation uses
    kept tokens only is segmented identically, as for SentencePiece BPE (`tokenizer_compression`).
    """
    spec = tokenizer.spec
    model = spec["model"]
    byte_ids = _byte_ids(tokenizer, model)
    vocab: dict[str, int] = model["vocab"]
    size = tokenizer.vocab_size
    kept = np.zeros(size, np.bool_)
    kept[byte_ids] = True
    kept[[t["id"] for t in spec.get("added_tokens", [])]] = True
    mandatory = int(kept.sum())
    check_target(mandatory, size, counts, vocab_size, coverage)
    merges = [_merge_pair(m) for m in model["merges"]]
    ranks = {pair: rank for rank, pair in reversed(list(enumerate(merges)))}
    tokens = {i: t for t, i in vocab.items()}

    def needs(i: int) -> list[int] | None:
        chain = _byte_level_merge_chain(tokens[i], ranks)
        return None if chain is None else [vocab[t] for t in chain] + [i]

    candidates = np.array(sorted(i for i in vocab.values() if not kept[i]), np.int64)
    order = candidates[np.lexsort((candidates, -counts[candidates]))]
    intermediates = keep_frequent(kept, order, counts, needs, vocab_size, coverage)

    id_map = np.full(size, -1, np.int32)
    id_map[np.flatnonzero(kept)] = np.arange(int(kept.sum()), dtype=np.int32)
    pruned = _renumbered(spec, merges, kept, id_map)
    small = HFTokenizer(pruned, _remap_config_files(tokenizer.config_files, id_map))
    result = Compression(
        model=pruned,
        id_map=id_map,
        coverage=float(counts[kept].sum() / counts.sum()),
        mandatory=mandatory,
        bpe_intermediates=intermediates,
    )
    return result, small


def _byte_ids(tokenizer: HFTokenizer, model: dict) -> list[int]:
    """The ids of the 256 byte tokens of `tokenizer` (whose tokenizer.json `model` this is);
    DataError when it is not plain byte-level BPE or lacks one (pruning would not be lossless)."""
    where = tokenizer.path or "<bytes>"
    if model["type"] != "BPE" or not tokenizer.byte_level:
        raise DataError(
            f"{where}: only byte-level BPE tokenizer.json files (GPT-2 / Llama 3 style) "
            f"compress; this one is {model['type']} without a ByteLevel decoder. Compress a "
            "SentencePiece .model instead, or this tokenizer's own SentencePiece original."
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise DataError(
            f"{where}: BPE with a continuing-subword prefix or end-of-word suffix cannot be "
            "pruned by merge replay; only plain byte-level BPE compresses"
        )
    vocab: dict[str, int] = model["vocab"]
    byte_ids = [vocab[c] for c in BYTE_LEVEL_CHARS if c in vocab]
    if len(byte_ids) != 256:
        raise DataError(
            f"{where}: {256 - len(byte_ids)} of the 256 byte tokens are missing, so pruning "
            "could not stay lossless"
        )
    return byte_ids


def _renumbered(
    spec: dict, merges: list[tuple[str, str]], kept: np.ndarray, id_map: np.ndarray
) -> bytes:
    """The tokenizer.json `spec` (modified in place) reduced to the `kept` [V] tokens, renumbered
    by `id_map` [V]: vocabulary, merges, added tokens, post-processor and padding ids."""
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    model["vocab"] = {t: int(id_map[i]) for t, i in vocab.items() if kept[i]}
    model["merges"] = [
        m
        for m, (a, b) in zip(model["merges"], merges, strict=True)
        if kept[vocab[a]] and kept[vocab[b]] and kept[vocab[a + b]]
    ]
    for token in spec.get("added_tokens", []):
        token["id"] = int(id_map[token["id"]])
    _remap_processor(spec.get("post_processor"), id_map)
    if spec.get("padding") and "pad_id" in spec["padding"]:
        spec["padding"]["pad_id"] = int(id_map[spec["padding"]["pad_id"]])
    return json.dumps(spec, ensure_ascii=False).encode()
