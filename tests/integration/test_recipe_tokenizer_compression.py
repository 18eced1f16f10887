"""Tokenizer compression: exact sizes, coverage, lossless round trips, id maps, the CLI."""

import json
import pathlib

import numpy as np
import pytest

from tests.helpers import write_byte_level_bpe
from tests.support.compression import BIG, DATA, DATA_CONFIG, UNSEEN
from tinylm_jax.cli.main import main
from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.data import corpus as corpus_lib
from tinylm_jax.data.pipeline import train_tokenizer_for
from tinylm_jax.data.tokenizer import (
    SentencePieceTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from tinylm_jax.errors import DataError
from tinylm_jax.interop import hf_tokenizer
from tinylm_jax.recipes.pangu import sentencepiece_compression as spc
from tinylm_jax.recipes.pangu import vocab_mapping
from tinylm_jax.recipes.pangu.bpe_json_compression import compress_bpe_json
from tinylm_jax.recipes.pangu.token_counts import count_tokens


@pytest.fixture(scope="module")
def corpus(data_dir):
    """(big unigram model bytes, train texts, token counts)."""
    config = DataConfig(**DATA_CONFIG)
    path = train_tokenizer_for(config)  # Cached in the session data dir (the CLI test reuses it).
    raw = corpus_lib.load_raw_corpus(config, resolve_data_dir(config))
    texts = [t for t, _ in corpus_lib.iter_texts(raw.splits["train"], raw.text_key) if t]
    big = load_tokenizer(path)
    counts = count_tokens(big, ((t, None) for t in texts), num_threads=2)
    return pathlib.Path(path).read_bytes(), texts, counts


@pytest.fixture(scope="module")
def bpe(corpus):
    _, texts, _ = corpus
    model = train_tokenizer(texts, 1000, "bpe")
    big = SentencePieceTokenizer(model)
    return model, count_tokens(big, ((t, None) for t in texts), num_threads=2)


def _mandatory(model: bytes) -> int:
    proto = spc.load_model_proto(model)
    return sum(p.type in spc.MANDATORY_TYPES or p.piece == spc.SPACE for p in proto.pieces)


def test_counts_match_encoding(corpus):
    model, texts, counts = corpus
    big = SentencePieceTokenizer(model)
    assert big.vocab_size == BIG
    ids = np.concatenate([big.encode(t) for t in texts[:10]])
    head = count_tokens(big, ((t, None) for t in texts[:10]), num_threads=1)
    np.testing.assert_array_equal(head.counts, np.bincount(ids, minlength=BIG))
    assert head.bytes == sum(len(t.encode()) for t in texts[:10])
    assert counts.documents == len(texts) and counts.tokens > head.tokens


def test_exact_size_and_monotone_coverage(corpus):
    model, _, counts = corpus
    sizes = [_mandatory(model), 300, 400, 700, 1000, 1300, BIG]
    coverages = []
    for size in sizes:
        result = spc.compress(model, counts.counts, vocab_size=size)
        assert result.vocab_size == size == SentencePieceTokenizer(result.model).vocab_size
        assert spc.load_model_proto(result.model).trainer_spec.vocab_size == size
        coverages.append(result.coverage)
    assert coverages == sorted(coverages) and coverages[0] < 0.5 < coverages[2]
    assert coverages[-1] == 1.0
    # --coverage picks the smallest frequency-ordered size that reaches the target.
    result = spc.compress(model, counts.counts, coverage=0.9)
    assert result.coverage >= 0.9
    smaller = spc.compress(model, counts.counts, vocab_size=result.vocab_size - 1)
    assert smaller.coverage < 0.9


def test_id_map_keeps_specials_bytes_and_order(corpus):
    model, _, counts = corpus
    result = spc.compress(model, counts.counts, vocab_size=400)
    id_map = result.id_map
    assert id_map.shape == (BIG,) and (id_map >= 0).sum() == 400
    np.testing.assert_array_equal(id_map[:260], np.arange(260))  # pad/bos/eos/unk + 256 bytes
    assert np.all(np.diff(id_map[id_map >= 0]) == 1)  # Kept pieces keep their order.
    small, big = SentencePieceTokenizer(result.model), SentencePieceTokenizer(model)
    assert (small.pad_id, small.bos_id, small.eos_id, small.unk_id) == (0, 1, 2, 3)
    for old in np.flatnonzero(id_map >= 0)[::37]:
        assert small.id_to_piece(id_map[old]) == big.id_to_piece(old)
    # The kept normal pieces are the most frequent ones.
    proto = spc.load_model_proto(model)
    normal = np.array([p.type == spc.Piece.NORMAL and p.piece != spc.SPACE for p in proto.pieces])
    kept = counts.counts[normal & (id_map >= 0)]
    assert len(kept) == 400 - _mandatory(model)
    assert kept.min() >= counts.counts[id_map == -1].max()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
@pytest.mark.parametrize("size", ["mandatory", 400])
def test_lossless_round_trip(corpus, bpe, model_type, size):
    model, texts, counts = corpus
    if model_type == "bpe":
        model, counts = bpe
    size = _mandatory(model) if size == "mandatory" else size
    small = SentencePieceTokenizer(spc.compress(model, counts.counts, vocab_size=size).model)
    assert small.vocab_size == size
    for text, ids in zip(texts, small.encode_batch(texts, 2), strict=True):
        assert small.decode(ids) == text
    for text in UNSEEN:
        assert small.decode(small.encode(text)) == text


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_text_of_kept_pieces_maps_through_id_map(corpus, bpe, model_type):
    model, texts, counts = corpus
    if model_type == "bpe":
        model, counts = bpe
    result = spc.compress(model, counts.counts, vocab_size=500)
    big, small = SentencePieceTokenizer(model), SentencePieceTokenizer(result.model)
    checked = 0
    for text in texts:
        for line in text.splitlines(keepends=True):
            old = big.encode(line)
            if (result.id_map[old] >= 0).all():
                assert small.encode(line) == result.id_map[old].tolist(), line
                checked += 1
    assert checked > 300
    # And text the big model would not segment that way is still lossless but longer.
    assert len(small.encode(texts[0])) > len(big.encode(texts[0]))


def test_bpe_keeps_merge_intermediates(bpe):
    model, counts = bpe
    result = spc.compress(model, counts.counts, vocab_size=400)
    assert result.bpe_intermediates > 0
    small = SentencePieceTokenizer(result.model)
    proto = spc.load_model_proto(result.model)
    for i, piece in enumerate(proto.pieces):
        if piece.type == spc.Piece.NORMAL:  # Every kept piece is reachable on its own text.
            assert small.encode(piece.piece.replace(spc.SPACE, " ")) == [i], piece.piece


def test_errors(corpus):
    model, _, counts = corpus
    with pytest.raises(DataError, match="out of range.*choose a size in"):
        spc.compress(model, counts.counts, vocab_size=BIG + 1)
    with pytest.raises(DataError, match="out of range"):
        spc.compress(model, counts.counts, vocab_size=100)
    with pytest.raises(DataError, match="coverage must be in"):
        spc.compress(model, counts.counts, coverage=1.5)
    with pytest.raises(DataError, match="exactly one"):
        spc.compress(model, counts.counts, vocab_size=400, coverage=0.9)
    with pytest.raises(DataError, match="no tokens"):
        spc.compress(model, np.zeros_like(counts.counts), vocab_size=400)


def test_cli_compress(corpus, tmp_path, capsys, gin_clean):
    params = [f"--gin_param={p}" for p in DATA]
    big = tmp_path / "big.model"
    assert main(["tokenizer", "train", *params, f"--out={big}"]) == 0
    assert load_tokenizer(big).vocab_size == BIG
    capsys.readouterr()
    out = tmp_path / "compressed"
    argv = ["tokenizer", "compress", f"--tokenizer={big}", "--gin_file=models/tiny_test.gin"]
    assert main([*argv, *params, "--vocab_size=400", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "coverage" in printed and "embedding+head" in printed
    report = json.loads((out / "report.json").read_text())
    assert (
        report["compressed"]["vocab_size"]
        == 400
        == load_tokenizer(out / "tokenizer.model").vocab_size
    )
    assert report["tokenizer"]["vocab_size"] == BIG and 0.5 < report["coverage"] < 1.0
    sample = report["sample"]
    assert sample["after"]["tokens_per_byte"] > sample["before"]["tokens_per_byte"]
    assert (
        sample["before"]["round_trip_mismatches"] == sample["after"]["round_trip_mismatches"] == 0
    )
    model = report["model"]  # tiny_test: tied, d_model 32, 2 layers.
    assert model["before"]["vocab_size"] == BIG and model["after"]["vocab_size"] == 400
    assert model["after"]["embedding_share"] < model["before"]["embedding_share"]
    id_map = vocab_mapping.load_id_map(out)
    np.testing.assert_array_equal(id_map, vocab_mapping.load_id_map(out / "id_map.json"))
    assert id_map.shape == (BIG,) and (id_map >= 0).sum() == 400

    # --coverage, with the big tokenizer taken from DataConfig (the cached one) and JSON output.
    assert (
        main(["tokenizer", "compress", *params, "--coverage=0.95", f"--out={out}2", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["coverage"] >= 0.95 and 400 < report["compressed"]["vocab_size"] < BIG

    assert main([*argv, *params, f"--vocab_size={BIG + 1}", f"--out={out}3"]) == 2
    assert "tinylm tokenizer: error: --vocab_size" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bpe_json(corpus, tmp_path_factory):
    """(directory, big byte-level BPE tokenizer.json of 1000 ids, token counts)."""
    _, texts, _ = corpus
    directory = write_byte_level_bpe(tmp_path_factory.mktemp("bpe_json"), texts, vocab_size=1000)
    big = load_tokenizer(directory)
    return directory, big, count_tokens(big, ((t, None) for t in texts), num_threads=2)


@pytest.mark.parametrize("size", [300, 700])
def test_byte_level_bpe_json_compression(bpe_json, corpus, size):
    _, big, counts = bpe_json
    _, texts, _ = corpus
    result, small = compress_bpe_json(big, counts.counts, vocab_size=size)
    assert result.vocab_size == small.vocab_size == size
    assert result.mandatory == 256 + 2  # byte tokens and the two special tokens
    id_map = result.id_map
    kept = np.flatnonzero(id_map >= 0)
    np.testing.assert_array_equal(id_map[kept], np.arange(size))
    assert [small.id_to_piece(i) for i in id_map[kept]] == [big.id_to_piece(i) for i in kept]
    assert (small.eos_id, small.pad_id) == (id_map[big.eos_id], id_map[big.pad_id])
    # The most frequent tokens are kept, and every kept merge stays reachable.
    optional = np.arange(result.mandatory, big.vocab_size)  # the trainer numbers merges last
    frequent = optional[np.argsort(-counts.counts[optional], kind="stable")]
    assert (id_map[frequent[: (size - result.mandatory) // 3]] >= 0).all()
    vocab, merges = small.spec["model"]["vocab"], small.spec["model"]["merges"]
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
    assert set(vocab.values()) == set(range(size))
    # Lossless on any text; lines the big tokenizer spells in kept tokens keep their tokens.
    for text in UNSEEN + texts[:5]:
        assert small.decode(small.encode(text)) == text
    lines = [line for text in texts[:20] for line in text.splitlines(keepends=True)]
    unchanged = 0
    for line, ids in zip(lines, big.encode_batch(lines), strict=True):
        if (id_map[ids] >= 0).all():
            assert small.encode(line) == id_map[ids].tolist(), line
            unchanged += 1
    assert unchanged > len(lines) // 10


def test_byte_level_bpe_json_compression_errors(bpe_json, corpus, tmp_path):
    _, big, counts = bpe_json
    with pytest.raises(DataError, match="out of range.*choose a size in \\[258, 1000\\]"):
        compress_bpe_json(big, counts.counts, vocab_size=257)
    model, _, _ = corpus
    sp = SentencePieceTokenizer(model, "big.model")
    (tmp_path / "tokenizer.json").write_text(json.dumps(hf_tokenizer.tokenizer_json(sp)))
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    unigram = load_tokenizer(tmp_path)
    with pytest.raises(DataError, match="only byte-level BPE tokenizer.json files"):
        compress_bpe_json(unigram, np.ones(unigram.vocab_size, np.int64), vocab_size=300)


def test_cli_compress_bpe_json(bpe_json, tmp_path, capsys, gin_clean):
    directory, big, _ = bpe_json
    out = tmp_path / "compressed"
    params = [f"--gin_param={p}" for p in DATA]
    argv = ["tokenizer", "compress", f"--tokenizer={directory}", "--vocab_size=400", "--json"]
    assert main([*argv, *params, f"--out={out}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    assert {"tokenizer.json", "tokenizer_config.json", "id_map.npy", "id_map.json"} <= {
        p.name for p in out.iterdir()
    }
    small = load_tokenizer(out)
    assert report["compressed"]["vocab_size"] == small.vocab_size == 400
    assert report["tokenizer"]["model_type"] == "byte-level bpe"
    assert report["compressed"]["sha256"] == small.fingerprint
    sample = report["sample"]
    assert sample["after"]["tokens_per_byte"] > sample["before"]["tokens_per_byte"]
    assert sample["after"]["round_trip_mismatches"] == 0
    id_map = vocab_mapping.load_id_map(out)
    assert id_map.shape == (big.vocab_size,) and (id_map >= 0).sum() == 400
