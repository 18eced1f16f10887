"""Fault battery, data shards: a packed-record shard that is missing, truncated or corrupted
inside, in the packed data cache or in a prepared dataset (`DataConfig.prepared`), stops
`tinylm train` with exit 2 and one message naming the file and how to rebuild it: missing and
truncated shards at start-up, a corrupted one at the record that fails to read. Never a silent
skip, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import tiny_run
from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib
from tinylm_jax.data import pipeline, prepare_single_host, prepared


def flags(data: str) -> list[str]:
    """A 4-step run on 12 documents; `data`: where its data comes from (a gin binding)."""
    return tiny_run(4) + ["DataConfig.max_documents = 12", "TrainConfig.eval_steps = 0", data]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[str, Path, Path]:
    """(the binding of a private data cache, the cache's packed dir, a prepared dataset of the
    same records). The cache's own paths are part of its keys: tests damage it in place and
    put it back."""
    root = tmp_path_factory.mktemp("data_faults")
    cache = f"DataConfig.data_dir = '{root / 'cache'}'"
    config = config_lib.parse(["models/tiny_test.gin"], flags(cache))
    data = pipeline.prepare_data(config.data, config.train.seq_len)
    prepare_single_host.prepare(config.data, config.train.seq_len, str(root / "prepared"))
    return cache, Path(data.stats["packed_path"]), root / "prepared"


def damage(shard: Path, how: str) -> None:
    if how == "missing":
        shard.unlink()
        return
    data = bytearray(shard.read_bytes())
    if how == "truncated":  # a copy cut short: the footer and index are gone
        shard.write_bytes(bytes(data[: len(data) // 2]))
        return
    # Corrupted inside: the records' bytes flipped, the index at the end intact.
    for k in range(64, len(data) * 3 // 5):
        data[k] ^= 0xFF
    shard.write_bytes(bytes(data))


def train(tmp_path: Path, data: str) -> int:
    args = ["train", f"--workdir={tmp_path / 'run'}", "--gin_file=models/tiny_test.gin"]
    return cli.main(args + [f"--gin_param={p}" for p in flags(data)])


# (damage, what the message says of the file)
DAMAGE = [
    ("missing", "missing 1 shard"),
    ("truncated", "cannot be opened: it is corrupted"),
    ("corrupted", "does not read: it is corrupted"),
]


@pytest.mark.slow
@pytest.mark.parametrize("how, says", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_shard_of_the_data_cache_exits_2_naming_it(
    built, tmp_path, capsys, gin_clean, how, says
):
    cache, packed, _ = built
    shard = packed / "train.array_record"
    intact = shard.read_bytes()
    damage(shard, how)
    try:
        assert train(tmp_path, cache) == 2
        err = capsys.readouterr().err
        assert says in err and str(shard) in err, err[-2000:]
        assert f"delete {packed} and rerun" in err, err[-2000:]
        if how == "corrupted":  # the rebuild the message asks for works
            shutil.rmtree(packed)
            assert train(tmp_path, cache) == 0
    finally:
        if packed.exists():
            shard.write_bytes(intact)


@pytest.mark.slow
@pytest.mark.parametrize("how, says", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_shard_of_a_prepared_dataset_exits_2_naming_it(
    built, tmp_path, capsys, gin_clean, how, says
):
    _, _, ready = built
    copy = tmp_path / "prepared"
    shutil.copytree(ready, copy)
    shard = copy / prepared.read_manifest(copy)["splits"]["train"]["shards"][0]
    damage(shard, how)
    assert train(tmp_path, f"DataConfig.prepared = '{copy}'") == 2
    err = capsys.readouterr().err
    assert says in err and str(shard) in err, err[-2000:]
    assert "tinylm data prepare" in err, err[-2000:]
