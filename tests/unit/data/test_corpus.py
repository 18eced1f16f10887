"""Raw corpora: TFDS builders, deterministic splits, skip accounting, bad input."""

import json

import pytest

from tests._data_corpus_util import write_corpus
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import builders, corpus
from tinylm_jax.errors import DataError


def _load(tmp_path, **kwargs):
    config = DataConfig(**{"dataset": "text_files", "validation_fraction": 0.2, **kwargs})
    return corpus.load_raw_corpus(config, tmp_path / "data")


def _keys(raw, split):
    return sorted(raw.splits[split][i]["key"].decode() for i in range(len(raw.splits[split])))


def test_text_files_counts_and_deterministic_split(tmp_path):
    write_corpus(tmp_path / "c", n_txt=20, n_jsonl=25)
    raw = _load(tmp_path, paths=(str(tmp_path / "c" / "*"),))
    n_train, n_val = len(raw.splits["train"]), len(raw.splits["validation"])
    assert n_train + n_val == 45
    assert 0 < n_val < 45
    assert raw.stats["train"]["documents"] == n_train
    # Same inputs -> same dataset, same split (also in a fresh data dir).
    again = _load(tmp_path / "other", paths=(str(tmp_path / "c" / "*"),))
    assert again.name == raw.name
    assert _keys(again, "validation") == _keys(raw, "validation")
    # Splitting is per document: validation does not depend on other documents.
    few = _load(tmp_path, paths=(str(tmp_path / "c" / "*.txt"),))
    assert set(_keys(few, "validation")) <= set(_keys(raw, "validation"))


def test_changed_inputs_change_the_dataset_config(tmp_path):
    write_corpus(tmp_path / "c", n_txt=5, n_jsonl=5)
    paths = (str(tmp_path / "c" / "*"),)
    first = _load(tmp_path, paths=paths)
    assert _load(tmp_path, paths=paths, text_key="meta").name != first.name
    assert _load(tmp_path, paths=paths, validation_fraction=0.5).name != first.name
    (tmp_path / "c" / "doc000.txt").write_text("changed\n")
    changed = _load(tmp_path, paths=paths)
    assert changed.name != first.name and changed.fingerprint != first.fingerprint


def test_skipped_documents_are_counted(tmp_path):
    c = tmp_path / "c"
    write_corpus(c, n_txt=3, n_jsonl=0)
    (c / "empty.txt").write_text("")
    (c / "blank.txt").write_text("  \n\n")
    (c / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (c / "docs.jsonl").write_bytes(
        b'{"text": "ok"}\n\n{"other": "x"}\nnot json\n{"text": ""}\n"\xff"\n'
    )
    raw = _load(tmp_path, paths=(str(c),), validation_fraction=0.0)
    assert raw.stats["train"]["documents"] == 4  # 3 txt + 1 jsonl line.
    assert raw.stats["train"]["skipped"] == {
        "empty": 3,
        "undecodable": 2,
        "missing_text_key": 1,
        "invalid_json": 1,
    }


def test_max_documents_and_python_stdlib(tmp_path):
    config = DataConfig(dataset="python_stdlib", max_documents=20, validation_fraction=0.1)
    raw = corpus.load_raw_corpus(config, tmp_path)
    assert len(raw.splits["train"]) + len(raw.splits["validation"]) == 20
    assert raw.name.startswith("python_stdlib/py")
    files = builders.stdlib_files()
    assert not any("site-packages" in f.parts or "test" in f.parts for f in files)


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["one doc", None, "two doc", ""]}), tmp_path / "x.parquet")
    raw = _load(
        tmp_path, paths=(str(tmp_path / "x.parquet"),), text_key="body", validation_fraction=0.0
    )
    assert raw.stats["train"] == {"documents": 2, "bytes": 14, "skipped": {"empty": 2}}
    with pytest.raises(DataError, match="no column 'text'"):
        _load(tmp_path, paths=(str(tmp_path / "x.parquet"),), validation_fraction=0.0)


def test_bad_input_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="matches no files"):
        _load(tmp_path, paths=(str(tmp_path / "missing" / "*.txt"),))
    with pytest.raises(DataError, match="needs DataConfig.paths"):
        _load(tmp_path, paths=())
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.txt").write_text("")
    (tmp_path / "e" / "b.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match="no usable documents"):
        _load(tmp_path, paths=(str(tmp_path / "e"),))
    with pytest.raises(DataError, match="Unknown dataset"):
        corpus.load_raw_corpus(DataConfig(dataset="no_such_dataset_xyz"), tmp_path)


def test_small_corpus_still_gets_a_validation_document(tmp_path):
    write_corpus(tmp_path / "c", n_txt=4, n_jsonl=0)
    raw = _load(tmp_path, paths=(str(tmp_path / "c"),), validation_fraction=0.001)
    assert (len(raw.splits["train"]), len(raw.splits["validation"])) == (3, 1)
    assert raw.stats["validation"]["documents"] == 1
    again = _load(tmp_path / "again", paths=(str(tmp_path / "c"),), validation_fraction=0.001)
    assert _keys(again, "validation") == _keys(raw, "validation")
