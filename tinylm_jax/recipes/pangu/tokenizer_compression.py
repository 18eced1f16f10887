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

Counting is `token_counts`, what is kept `piece_selection`, the pruning of each format
`sentencepiece_compression` and `bpe_json_compression`; this module runs them on a corpus.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data.tokenizer import (
    HFTokenizer,
    PieceKind,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
)
from tinylm_jax.errors import DataError
from tinylm_jax.files import write_atomically
from tinylm_jax.model.counting import model_stats
from tinylm_jax.recipes.pangu import vocab_mapping
from tinylm_jax.recipes.pangu.bpe_json_compression import compress_bpe_json
from tinylm_jax.recipes.pangu.piece_selection import Compression
from tinylm_jax.recipes.pangu.sentencepiece_compression import compress, load_model_proto, sp_pb2
from tinylm_jax.recipes.pangu.token_counts import cached_counts

REPORT_FILE = "report.json"


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
    counts = cached_counts(big, raw, data_dir, config.num_workers)
    result, small, model_type = _compress_tokenizer(big, counts.counts, vocab_size, coverage)

    out = pathlib.Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    small_path = out / small.save(out)[0]
    vocab_mapping.save_id_map(out, result.id_map)
    small = load_tokenizer(small_path)

    sample = _sample_texts(raw.splits["train"], raw.text_key, sample_documents)
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
        "sample": _sample_report(big, small, sample, config.num_workers),
    }
    if model_config is not None:
        report["model"] = _model_report(model_config, big.vocab_size, small.vocab_size)
    write_atomically(out / REPORT_FILE, json.dumps(report, indent=1) + "\n")  # the last file
    return report


def _compress_tokenizer(
    big: Tokenizer, counts: np.ndarray, vocab_size: int | None, coverage: float | None
) -> tuple[Compression, Tokenizer, str]:
    """(compression, the pruned tokenizer, the big one's model type for the report), by the
    backend of `big`."""
    if isinstance(big, SentencePieceTokenizer):
        result = compress(big.proto, counts, vocab_size, coverage)
        spec = load_model_proto(big.proto).trainer_spec
        model_type = sp_pb2.TrainerSpec.ModelType.Name(spec.model_type).lower()
        return result, SentencePieceTokenizer(result.model), model_type
    if not isinstance(big, HFTokenizer):
        raise DataError(
            "tokenizer compression takes a SentencePiece model or a byte-level BPE "
            f"tokenizer.json, not a {type(big).__name__}"
        )
    result, small = compress_bpe_json(big, counts, vocab_size, coverage)
    return result, small, "byte-level bpe"


def _sample_report(
    big: Tokenizer, small: Tokenizer, sample: list[str], threads: int | None
) -> dict[str, Any]:
    """Tokens per byte, byte-fallback share and round trips of both tokenizers on `sample`."""
    before = _sample_stats(big, sample, threads)
    after = _sample_stats(small, sample, threads)
    return {
        "documents": len(sample),
        "bytes": sum(len(t.encode("utf-8")) for t in sample),
        "before": before,
        "after": after,
    }


def _model_report(model_config: ModelConfig, big_size: int, small_size: int) -> dict[str, Any]:
    """The embedding+head share of `model_config` at the big and the compressed vocab size."""
    return {
        "d_model": model_config.d_model,
        "n_layers": model_config.n_layers,
        "tie_embeddings": model_config.tie_embeddings,
        "before": _embedding_stats(model_config, big_size),
        "after": _embedding_stats(model_config, small_size),
    }


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
