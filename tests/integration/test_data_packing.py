"""Packing: no lost tokens, segments/positions, padding only at the end, stable ids."""

from pathlib import Path

import numpy as np
import pytest

from tests._data_corpus_util import write_corpus
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data.pipeline import make_eval_iterator, prepare_data
from tinylm_jax.errors import DataError


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    texts = write_corpus(root / "c", n_txt=20, n_jsonl=20)
    return root, texts


def _config(root, data_dir, **kwargs):
    return DataConfig(
        dataset="text_files",
        paths=(str(root / "c"),),
        vocab_size=400,
        validation_fraction=0.2,
        data_dir=str(data_dir),
        **kwargs,
    )


def _all_records(source):
    return [source[i] for i in range(len(source))]


def test_prepare_data_loses_no_tokens_and_ids_are_stable(corpus_dir, tmp_path):
    root, texts = corpus_dir
    data = prepare_data(_config(root, tmp_path / "a"), seq_len=64)
    tok = data.tokenizer
    total_docs = 0
    for split in ("train", "validation"):
        source, stats = getattr(data, split), data.stats[split]
        records = _all_records(source)
        assert [int(r["id"]) for r in records] == list(range(len(records)))
        assert stats["records"] == len(records)
        assert len(records) * 65 == stats["tokens"] + stats["padding_tokens"]
        assert stats["padding_tokens"] < 65
        segments = np.stack([r["segment_ids"] for r in records])
        assert (segments[:-1] > 0).all()  # Only the last record is padded.
        assert (segments[-1] == 0).sum() == stats["padding_tokens"]
        tokens = np.concatenate([r["tokens"] for r in records])[: stats["tokens"]]
        # Every document comes back exactly, between BOS and EOS.
        bounds = np.flatnonzero(tokens == tok.eos_id)
        docs = np.split(tokens, bounds[:-1] + 1)
        assert len(docs) == stats["documents"]
        decoded = [tok.decode(d) for d in docs]
        assert all(d[0] == tok.bos_id for d in docs)
        assert set(decoded) <= set(texts)
        total_docs += len(docs)
    assert total_docs == len(texts)
    assert data.stats["train"]["tokens"] > 0 and data.stats["validation"]["records"] > 0

    # A rebuild elsewhere (tokenizer retrained too) gives identical records and ids.
    again = prepare_data(_config(root, tmp_path / "b"), seq_len=64)
    assert again.tokenizer.fingerprint == tok.fingerprint
    for a, b in zip(_all_records(data.train), _all_records(again.train), strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    # A second call reuses the cache.
    cached = prepare_data(_config(root, tmp_path / "a"), seq_len=64)
    assert cached.stats == data.stats


def test_a_packed_cache_of_another_format_is_refused(corpus_dir, tmp_path):
    """The format version keys the cache and is checked when a cached build is read."""
    import json

    from tinylm_jax.data import packing

    root, _ = corpus_dir
    data = prepare_data(_config(root, tmp_path), seq_len=32)
    packed = Path(data.stats["packed_path"])
    assert packed.name.endswith(f"-v{packing.FORMAT_VERSION}")
    manifest = json.loads((packed / "manifest.json").read_text())
    (packed / "manifest.json").write_text(json.dumps({**manifest, "format_version": 0}))
    with pytest.raises(DataError, match="packed-data format 0.*delete"):
        prepare_data(_config(root, tmp_path), seq_len=32)


def test_prepare_data_with_given_tokenizer_and_bad_input(corpus_dir, tmp_path):
    root, _ = corpus_dir
    data = prepare_data(_config(root, tmp_path), seq_len=32)
    other = prepare_data(_config(root, tmp_path, tokenizer=data.tokenizer.path), seq_len=16)
    assert other.tokenizer.fingerprint == data.tokenizer.fingerprint
    assert other.train[0]["tokens"].shape == (17,)
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(_config(root, tmp_path, tokenizer=str(tmp_path / "nope.model")), 16)
    with pytest.raises(DataError, match="seq_len"):
        prepare_data(_config(root, tmp_path), 0)


def test_skips_reach_prepared_stats(tmp_path):
    c = tmp_path / "c"
    write_corpus(c, n_txt=5, n_jsonl=0)
    (c / "bad.txt").write_bytes(b"\xff\xfe broken")
    (c / "empty.txt").write_text("")
    data = prepare_data(
        DataConfig(
            dataset="text_files",
            paths=(str(c),),
            vocab_size=300,
            validation_fraction=0.0,
            data_dir=str(tmp_path / "d"),
        ),
        32,
    )
    assert data.stats["train"]["documents"] == 5
    assert data.stats["train"]["skipped"] == {"undecodable": 1, "empty": 1}
    assert len(data.validation) == 0 and data.stats["validation"]["records"] == 0
    assert list(make_eval_iterator(data, 4)) == []
