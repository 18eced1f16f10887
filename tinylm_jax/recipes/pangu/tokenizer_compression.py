"""PanGu-π Pro tokenizer compression (arXiv 2402.02791, Sec. 3.1): prune a SentencePiece model
or a byte-level BPE tokenizer.json.

The big tokenizer is not retrained. Its token frequencies are counted over the training
corpus, then the new model keeps
  1. every control, unknown, user-defined and byte-fallback piece and the whitespace piece
     '▁' (a space that falls back to bytes would decode as '▁'), and
  2. the most frequent normal pieces, until the target size (or corpus coverage) is reached;
every other piece is deleted from the ModelProto. Kept pieces keep their relative order (so
pad/bos/eos/unk and the 256 byte pieces keep their ids in our tokenizers), their scores, and
the trainer/normalizer specs, and `id_map[old_id]` is the new id or -1.

What happens to a deleted piece: its text is re-tokenized by the remaining pieces, and any
character left without a piece falls back to its UTF-8 byte pieces, so a model trained with
byte fallback (ours always are) still encodes and decodes any text losslessly; only the
token count grows. Text whose big-tokenizer segmentation uses kept pieces only is segmented
identically (ids through `id_map`):
  * unigram: the kept pieces' scores are unchanged (not renormalized: the Viterbi search
    only compares them), and the best segmentation over a subset
    of the lattice that still contains the old best path is that path. (One corner: the
    unknown-character penalty is 10 below the lowest kept score, so it rises when low-score
    pieces go; it only matters for characters whose own piece was deleted.)
  * BPE: a piece is produced by a chain of merges, and deleting an intermediate would make it
    unreachable. Every kept BPE piece therefore brings the pieces its merges go through
    (replaying SentencePiece's merge order on the piece's own text), so all merges of the old
    segmentation remain available and still win; pieces that are never reachable are skipped.

A byte-level BPE tokenizer.json (GPT-2, Llama 3; `compress_bpe_json`) is pruned the same way:
its added tokens and its 256 byte tokens are always kept (any text still encodes, down to
bytes), then the most frequent tokens with the tokens their merges go through; only merges
whose parts and result are kept remain, in rank order, and the kept tokens are renumbered in
id order (`id_map`). The same argument makes old segmentations of kept tokens survive.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data.packing import tokenize_documents
from tinylm_jax.data.tokenizer import (
    BYTE_LEVEL_CHARS,
    HF_GENERATION_FILE,
    ROLES,
    HFTokenizer,
    PieceKind,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
)
from tinylm_jax.errors import DataError
from tinylm_jax.model.counting import model_stats
from tinylm_jax.recipes.pangu import vocab_mapping

log = logging.getLogger(__name__)

Piece = sp_pb2.ModelProto.SentencePiece
# Pieces that are kept whatever their frequency: the ids the pipeline relies on, pieces a
# user declared, and byte fallback (what makes the pruned model lossless).
MANDATORY_TYPES = (Piece.CONTROL, Piece.UNKNOWN, Piece.USER_DEFINED, Piece.BYTE)
SPACE = "\u2581"  # SentencePiece's whitespace symbol.
REPORT_FILE = "report.json"
_COUNT_FLUSH_TOKENS = 1 << 22  # Tokens buffered before one np.bincount.


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    """How often each id of a tokenizer occurs in a corpus (BOS/EOS not counted)."""

    counts: np.ndarray  # int64 [V]
    documents: int
    bytes: int

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())


@dataclasses.dataclass(frozen=True)
class Compression:
    """A pruned model and how it relates to the big one."""

    model: bytes  # the pruned tokenizer: a serialized ModelProto, or tokenizer.json
    id_map: np.ndarray  # int32 [V_old]: new id, or -1 for a deleted piece
    coverage: float  # fraction of counted corpus tokens whose piece is kept
    mandatory: int  # pieces kept regardless of frequency
    bpe_intermediates: int  # pieces kept only because a kept BPE piece merges through them

    @property
    def vocab_size(self) -> int:
        return int((self.id_map >= 0).sum())


def load_model_proto(model: bytes) -> sp_pb2.ModelProto:
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model)
    return proto


def count_tokens(
    tokenizer: Tokenizer,
    texts: Iterable[tuple[str | None, str | None]],
    num_threads: int | None = None,
    log_every: int = 1000,
) -> TokenCounts:
    """Counts token ids over `(text, skip_reason)` items (as `corpus.iter_texts` yields).

    Encoding runs on all cores in SentencePiece's thread pool (`packing.tokenize_documents`);
    progress is logged every `log_every` documents.
    """
    counts = np.zeros(tokenizer.vocab_size, np.int64)
    total_bytes = 0

    def measured() -> Iterator[tuple[str | None, str | None]]:
        nonlocal total_bytes
        for text, reason in texts:
            if text is not None:
                total_bytes += len(text.encode("utf-8"))
            yield text, reason

    start = time.monotonic()
    skipped: collections.Counter = collections.Counter()
    documents, buffered, buffer = 0, 0, []
    for ids in tokenize_documents(measured(), tokenizer, num_threads, skipped, log_every, "corpus"):
        buffer.append(ids[1:-1])  # Drop the BOS/EOS that packing adds.
        documents += 1
        buffered += len(ids)
        if buffered >= _COUNT_FLUSH_TOKENS:
            counts += np.bincount(np.concatenate(buffer), minlength=tokenizer.vocab_size)
            buffer, buffered = [], 0
    if buffer:
        counts += np.bincount(np.concatenate(buffer), minlength=tokenizer.vocab_size)
    seconds = time.monotonic() - start
    log.info(
        "Counted %d tokens in %d documents (%.1f MB, %.2f MB/s).",
        counts.sum(),
        documents,
        total_bytes / 1e6,
        total_bytes / 1e6 / max(seconds, 1e-9),
    )
    return TokenCounts(counts=counts, documents=documents, bytes=total_bytes)


def _merge_chain(text: str, priority) -> list[str] | None:
    """The symbols made while greedily merging `text`'s characters, in order: repeatedly merge
    the adjacent pair of lowest `priority(left, right)` (None: not a merge; leftmost on ties).
    None when the merges do not end in `text` itself (it is unreachable)."""
    symbols = list(text)
    made = []
    while len(symbols) > 1:
        best_priority, best = None, -1
        for k in range(len(symbols) - 1):
            value = priority(symbols[k], symbols[k + 1])
            if value is not None and (best_priority is None or value < best_priority):
                best_priority, best = value, k
        if best < 0:
            break
        symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        made.append(symbols[best])
    return made if symbols == [text] else None


def _bpe_merge_chain(text: str, scores: dict[str, float]) -> list[str] | None:
    """The pieces SentencePiece's BPE creates while encoding `text` alone, in order.

    Mirrors bpe_model.cc: merge the adjacent pair whose concatenation is a piece with the
    highest score (leftmost on ties).
    """

    def priority(left: str, right: str) -> float | None:
        score = scores.get(left + right)
        return None if score is None else -score

    return _merge_chain(text, priority)


def _check_target(
    mandatory: int, size: int, counts: np.ndarray, vocab_size: int | None, coverage: float | None
) -> None:
    if (vocab_size is None) == (coverage is None):
        raise DataError("Give exactly one of --vocab_size and --coverage.")
    if counts.shape != (size,):
        raise DataError(f"Token counts have shape {counts.shape}; the tokenizer has {size} pieces.")
    if vocab_size is not None and not mandatory <= vocab_size <= size:
        raise DataError(
            f"--vocab_size={vocab_size} is out of range: the tokenizer has {size} pieces, "
            f"{mandatory} of them special, byte or whitespace pieces that are always "
            f"kept; choose a size in [{mandatory}, {size}]."
        )
    if coverage is not None and not 0.0 < coverage <= 1.0:
        raise DataError(f"--coverage must be in (0, 1]; got {coverage}.")
    if int(counts.sum()) == 0:
        raise DataError("The corpus produced no tokens; check DataConfig (dataset, paths).")


def _keep_frequent(
    kept: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray,
    needs: Callable[[int], list[int] | None],
    vocab_size: int | None,
    coverage: float | None,
) -> int:
    """Adds pieces to `kept` (in place) in `order` until the target is met; returns the
    intermediates added. `needs(i)` is what keeping piece i takes (i and the merge
    intermediates it is built through), or None when i is unreachable."""
    total = int(counts.sum())
    n_kept, covered, intermediates = int(kept.sum()), int(counts[kept].sum()), 0
    for i in order:
        if vocab_size is not None and n_kept == vocab_size:
            break
        if coverage is not None and covered >= coverage * total:
            break
        if kept[i]:
            continue
        needed = needs(int(i))
        if needed is None:
            continue
        add = [j for j in dict.fromkeys(needed) if not kept[j]]
        if vocab_size is not None and n_kept + len(add) > vocab_size:
            continue  # A BPE piece whose missing intermediates do not fit; smaller ones may.
        kept[add] = True
        n_kept += len(add)
        covered += int(counts[add].sum())
        intermediates += len(add) - 1
    if vocab_size is not None and n_kept != vocab_size:
        raise DataError(
            f"Only {n_kept} pieces of the BPE tokenizer are reachable by merges; choose "
            f"--vocab_size <= {n_kept}."
        )
    return intermediates


def select_pieces(
    proto: sp_pb2.ModelProto,
    counts: np.ndarray,
    vocab_size: int | None = None,
    coverage: float | None = None,
) -> tuple[np.ndarray, int, int]:
    """Boolean [V] mask of the pieces to keep, the mandatory count and BPE intermediates added.

    Exactly one of `vocab_size` (the exact size of the result) and `coverage` (the smallest
    frequency-ordered prefix whose kept pieces cover that fraction of corpus tokens) is given.
    Normal pieces are taken by descending count, ties by ascending id (unigram ids follow
    score, BPE ids follow merge order).
    """
    types = np.array([p.type for p in proto.pieces])
    # The whitespace symbol too: without it a space byte-falls back to the UTF-8 of '▁'
    # itself, which decodes as '▁', not ' '.
    kept = np.isin(types, MANDATORY_TYPES) | np.array([p.piece == SPACE for p in proto.pieces])
    mandatory = int(kept.sum())
    _check_target(mandatory, len(types), counts, vocab_size, coverage)
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
    intermediates = _keep_frequent(kept, order, counts, needs, vocab_size, coverage)
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


def _byte_level_merge_chain(token: str, ranks: dict[tuple[str, str], int]) -> list[str] | None:
    """The tokens byte-level BPE creates while encoding `token`'s own characters, in order:
    the adjacent pair of lowest merge rank is merged first (leftmost on ties)."""
    return _merge_chain(token, lambda left, right: ranks.get((left, right)))


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
    kept tokens only is segmented identically, as for SentencePiece BPE above.
    """
    spec = tokenizer.spec
    model = spec["model"]
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
    size = tokenizer.vocab_size
    byte_ids = [vocab[c] for c in BYTE_LEVEL_CHARS if c in vocab]
    if len(byte_ids) != 256:
        raise DataError(
            f"{where}: {256 - len(byte_ids)} of the 256 byte tokens are missing, so pruning "
            "could not stay lossless"
        )
    kept = np.zeros(size, np.bool_)
    kept[byte_ids] = True
    kept[[t["id"] for t in spec.get("added_tokens", [])]] = True
    mandatory = int(kept.sum())
    _check_target(mandatory, size, counts, vocab_size, coverage)
    merges = [_merge_pair(m) for m in model["merges"]]
    ranks = {pair: rank for rank, pair in reversed(list(enumerate(merges)))}
    tokens = {i: t for t, i in vocab.items()}

    def needs(i: int) -> list[int] | None:
        chain = _byte_level_merge_chain(tokens[i], ranks)
        return None if chain is None else [vocab[t] for t in chain] + [i]

    candidates = np.array(sorted(i for i in vocab.values() if not kept[i]), np.int64)
    order = candidates[np.lexsort((candidates, -counts[candidates]))]
    intermediates = _keep_frequent(kept, order, counts, needs, vocab_size, coverage)

    id_map = np.full(size, -1, np.int32)
    id_map[np.flatnonzero(kept)] = np.arange(int(kept.sum()), dtype=np.int32)
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
    pruned = json.dumps(spec, ensure_ascii=False).encode()
    small = HFTokenizer(pruned, _remap_config_files(tokenizer.config_files, id_map))
    result = Compression(
        model=pruned,
        id_map=id_map,
        coverage=float(counts[kept].sum() / counts.sum()),
        mandatory=mandatory,
        bpe_intermediates=intermediates,
    )
    return result, small


def _cached_counts(
    tokenizer: Tokenizer, raw: corpus_lib.RawCorpus, data_dir: pathlib.Path, threads: int | None
) -> TokenCounts:
    """Counts over the train split, cached per (corpus, tokenizer) in the data dir."""
    path = data_dir / "token_counts" / f"{raw.fingerprint}-{tokenizer.fingerprint[:16]}.npz"
    if path.exists():
        with np.load(path) as f:
            return TokenCounts(f["counts"], int(f["documents"]), int(f["bytes"]))
    log.info("Counting %s tokens over the train split of %s ...", tokenizer.path, raw.name)
    texts = corpus_lib.iter_texts(raw.splits["train"], raw.text_key)
    counts = count_tokens(tokenizer, texts, threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, counts=counts.counts, documents=counts.documents, bytes=counts.bytes)
    os.replace(tmp, path)
    return counts


def _sample_texts(source: Sequence[Any], text_key: str, n: int) -> list[str]:
    """Up to `n` documents spread evenly over `source`."""
    if len(source) == 0 or n <= 0:
        return []
    idx = np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int))
    return [t for t, _ in corpus_lib.iter_texts([source[int(i)] for i in idx], text_key) if t]


def _sample_stats(tokenizer: Tokenizer, texts: list[str], threads: int | None) -> dict[str, Any]:
    encoded = tokenizer.encode_batch(texts, threads) if texts else []
    # Byte-fallback pieces; a byte-level BPE's byte tokens are ordinary tokens (share 0).
    is_byte = np.array([kind == PieceKind.BYTE for kind, _ in tokenizer.pieces])
    ids = np.concatenate([np.asarray(x, np.int64) for x in encoded] + [np.zeros(0, np.int64)])
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    mismatches = sum(tokenizer.decode(x) != t for x, t in zip(encoded, texts, strict=True))
    return {
        "tokens": int(len(ids)),
        "tokens_per_byte": len(ids) / max(n_bytes, 1),
        "byte_fallback_share": float(is_byte[ids].mean()) if len(ids) else 0.0,
        "round_trip_mismatches": int(mismatches),
    }


def _embedding_stats(model_config: ModelConfig, vocab_size: int) -> dict[str, Any]:
    stats = model_stats(model_config.replace(vocab_size=vocab_size))
    return {
        "vocab_size": vocab_size,
        "total_params": stats.total_params,
        "embedding_params": stats.embedding_params,
        "embedding_share": stats.embedding_share,
    }


def compress_corpus(
    config: DataConfig,
    tokenizer_path: str,
    out: str | os.PathLike[str],
    vocab_size: int | None = None,
    coverage: float | None = None,
    model_config: ModelConfig | None = None,
    sample_documents: int = 2000,
) -> dict[str, Any]:
    """Compresses `tokenizer_path` by its frequencies on `config`'s corpus; returns the report.

    `tokenizer_path` is a SentencePiece model or a byte-level BPE tokenizer.json (or a
    directory holding one). Writes into `out`: the pruned tokenizer (`tokenizer.model`, or
    `tokenizer.json` with its special-token files), `id_map.npy` / `id_map.json` (old id ->
    new id or -1) and `report.json`. Token counts are cached in the data dir, so compressing
    the same big tokenizer to several sizes reads the corpus once. Tokens per byte
    before/after are measured on `sample_documents` training documents spread over the
    split. With
    `model_config` (a ModelConfig) the report has its embedding+head share at both sizes.
    """
    if sample_documents < 1:
        raise DataError(f"--sample_documents must be positive; got {sample_documents}.")
    big = load_tokenizer(tokenizer_path)
    data_dir = resolve_data_dir(config)
    data_dir.mkdir(parents=True, exist_ok=True)
    raw = corpus_lib.load_raw_corpus(config, data_dir)
    counts = _cached_counts(big, raw, data_dir, config.num_workers)
    if isinstance(big, SentencePieceTokenizer):
        result = compress(big.proto, counts.counts, vocab_size, coverage)
        small: Tokenizer = SentencePieceTokenizer(result.model)
        spec = load_model_proto(big.proto).trainer_spec
        model_type = sp_pb2.TrainerSpec.ModelType.Name(spec.model_type).lower()
    else:
        result, small = compress_bpe_json(big, counts.counts, vocab_size, coverage)
        model_type = "byte-level bpe"

    out = pathlib.Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    small_path = out / small.save(out)[0]
    vocab_mapping.save_id_map(out, result.id_map)
    small = load_tokenizer(small_path)

    sample = _sample_texts(raw.splits["train"], raw.text_key, sample_documents)
    before = _sample_stats(big, sample, config.num_workers)
    after = _sample_stats(small, sample, config.num_workers)
    report: dict[str, Any] = {
        "tokenizer": {
            "path": str(tokenizer_path),
            "vocab_size": big.vocab_size,
            "model_type": model_type,
            "sha256": big.fingerprint,
        },
        "compressed": {
            "path": str(small_path),
            "vocab_size": small.vocab_size,
            "mandatory_pieces": result.mandatory,
            "bpe_intermediates": result.bpe_intermediates,
            "sha256": small.fingerprint,
        },
        "target": {"vocab_size": vocab_size, "coverage": coverage},
        "corpus": {
            "dataset": raw.name,
            "split": "train",
            "documents": counts.documents,
            "bytes": counts.bytes,
            "tokens": counts.tokens,
        },
        "coverage": result.coverage,
        "sample": {
            "documents": len(sample),
            "bytes": sum(len(t.encode("utf-8")) for t in sample),
            "before": before,
            "after": after,
        },
    }
    if model_config is not None:
        report["model"] = {
            "d_model": model_config.d_model,
            "n_layers": model_config.n_layers,
            "tie_embeddings": model_config.tie_embeddings,
            "before": _embedding_stats(model_config, big.vocab_size),
            "after": _embedding_stats(model_config, small.vocab_size),
        }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A readable summary of `compress_corpus`'s report."""
    big, small, corpus = report["tokenizer"], report["compressed"], report["corpus"]
    before, after = report["sample"]["before"], report["sample"]["after"]
    growth = after["tokens_per_byte"] / max(before["tokens_per_byte"], 1e-12) - 1
    merges = small["bpe_intermediates"]
    lines = [
        f"compressed {big['path']} ({big['model_type']}, {big['vocab_size']:,} pieces)",
        f"  -> {small['path']} ({small['vocab_size']:,} pieces: {small['mandatory_pieces']:,} "
        "special/byte/space pieces always kept"
        + (f", {merges:,} BPE merge intermediates" if merges else "")
        + ")",
        f"corpus              {corpus['dataset']} train: {corpus['documents']:,} documents, "
        f"{corpus['bytes'] / 1e6:.2f} MB, {corpus['tokens']:,} tokens",
        f"coverage            {100 * report['coverage']:.2f}% of corpus tokens are kept pieces",
        f"tokens per byte     {before['tokens_per_byte']:.4f} -> {after['tokens_per_byte']:.4f} "
        f"({100 * growth:+.1f}%) on {report['sample']['documents']:,} sampled documents",
        f"byte-fallback share {100 * before['byte_fallback_share']:.2f}% -> "
        f"{100 * after['byte_fallback_share']:.2f}% of tokens",
        f"round-trip errors   {before['round_trip_mismatches']} -> {after['round_trip_mismatches']}"
        " sampled documents",
    ]
    model = report.get("model")
    if model:
        mb, ma = model["before"], model["after"]
        tied = "tied" if model["tie_embeddings"] else "untied"
        lines += [
            f"embedding+head      {100 * mb['embedding_share']:.2f}% -> "
            f"{100 * ma['embedding_share']:.2f}% of parameters (ModelConfig d_model="
            f"{model['d_model']}, n_layers={model['n_layers']}, {tied})",
            f"parameters          {mb['total_params']:,} -> {ma['total_params']:,}",
        ]
    return "\n".join(lines)
