"""`tinylm data prepare` on Apache Beam: the single-host records, byte for byte, with any
number of workers; a run trains on the prepared dataset as on its own data and resumes."""

import json
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import TINY_DATA, tiny_run, train_losses
from tinylm_jax.cli import main as cli
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline, prepared

pytest.importorskip("apache_beam")
pytestmark = pytest.mark.beam

WORDS = ["alpha", "beta", "gamma", "delta", "pack", "token", "cache", "lock", "river", "stone"]


def _corpus(path, n_docs=400):
    """Documents of 1 to 80 words, one of them empty (skipped)."""
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n_docs):
            words = (rng.choice(WORDS) + str(rng.randrange(20)) for _ in range(rng.randrange(80)))
            f.write(json.dumps({"text": f"doc {i}: " + " ".join(words) if i != 7 else ""}) + "\n")


def _prepare(out, *params, workers=1, runner="DirectRunner"):
    flags = [f"--gin_param={p}" for p in params]
    argv = ["data", "prepare", f"--out={out}", f"--num_workers={workers}", f"--runner={runner}"]
    return cli.main([*argv, *flags])


@pytest.mark.slow
def test_one_and_two_workers_give_the_single_host_records(tmp_path, gin_clean, capsys):
    _corpus(tmp_path / "docs.jsonl")
    params = [
        "DataConfig.dataset = 'text_files'",
        f"DataConfig.paths = ('{tmp_path / 'docs.jsonl'}',)",
        "DataConfig.vocab_size = 300",
        "DataConfig.validation_fraction = 0.1",
        "DataConfig.prepare_chunk_documents = 37",  # chunks end mid-record
        "DataConfig.records_per_shard = 50",  # several shards per split
        "TrainConfig.seq_len = 32",
    ]
    assert _prepare(tmp_path / "bad", *params, runner="NoSuchRunner") == 2
    assert "NoSuchRunner" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert _prepare(tmp_path / "w1", *params) == 0
    assert _prepare(tmp_path / "w2", *params, workers=2) == 0
    assert _prepare(tmp_path / "none", *params, runner="none") == 0  # the single-host writer
    paths = (str(tmp_path / "docs.jsonl"),)
    config = DataConfig("text_files", paths, vocab_size=300, validation_fraction=0.1)
    single = pipeline.prepare_data(config, seq_len=32)
    manifests = [prepared.read_manifest(tmp_path / w) for w in ("w1", "w2", "none")]
    assert manifests[0] == manifests[1] == manifests[2]
    assert len(manifests[0]["splits"]["train"]["shards"]) > 1
    # The empty document's split hashes its key (which holds tmp_path), so count both splits.
    skipped = [
        manifests[0]["splits"][s]["skipped"].get("empty", 0) for s in ("train", "validation")
    ]
    assert sum(skipped) == 1
    for w in ("w1", "w2", "none"):
        _, _, sources = prepared.open_prepared(tmp_path / w, 32, None)
        for split in ("train", "validation"):
            ours, theirs = getattr(single, split), sources[split]
            assert len(ours) == len(theirs) == single.stats[split]["records"] > 0
            for i in range(len(ours)):
                a, b = ours[i], theirs[i]
                assert all(np.array_equal(a[k], b[k]) for k in a), (w, split, i)


def _train(workdir, *params, fault=None):
    program = ["tests.fault_runner", fault] if fault else ["tinylm_jax.cli"]
    flags = [f"--gin_param={p}" for p in [*tiny_run(steps=6), *params]]
    argv = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin", *flags]
    return subprocess.run(
        [sys.executable, "-m", *program, *argv], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_two_round_run_on_a_prepared_dataset_has_its_own_datas_losses_and_resumes(
    tmp_path, data_dir, gin_clean
):
    out = tmp_path / "prepared"
    assert _prepare(out, *TINY_DATA, "TrainConfig.seq_len = 32", workers=2) == 0
    common = [
        "CheckpointConfig.every_steps = 2",
        "TrainConfig.eval_every = 0",
        "RoundsConfig.num_rounds = 2",  # round 2 replays records by stable id
        "RoundsConfig.partitions = 2",
        "RoundsConfig.score_batch_size = 64",
    ]
    own = _train(tmp_path / "own", *common)
    assert own.returncode == 0, own.stderr[-3000:]
    on_prepared = [*common, f"DataConfig.prepared = '{out}'", "DataConfig.dataset = 'none'"]
    killed = _train(tmp_path / "run", *on_prepared, fault="KILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _train(tmp_path / "run", *on_prepared)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 2" in resumed.stdout + resumed.stderr
    assert "round 2/2: steps 4-6 on" in resumed.stdout, resumed.stdout[-2000:]
    expected, logged = train_losses(tmp_path / "own"), train_losses(tmp_path / "run")
    assert set(range(1, 7)) <= logged.keys()
    assert logged == {step: expected[step] for step in logged}  # bit-exact, as if uninterrupted


@pytest.mark.slow
def test_beam_writes_a_prepared_dataset_to_gs_that_reads_as_the_local_one(gcs, tmp_path, gin_clean):
    import fsspec

    from tests.gcs_emulator import BUCKET

    _corpus(tmp_path / "docs.jsonl", n_docs=120)
    params = [
        "DataConfig.dataset = 'text_files'",
        f"DataConfig.paths = ('{tmp_path / 'docs.jsonl'}',)",
        "DataConfig.vocab_size = 300",
        "DataConfig.records_per_shard = 20",
        "TrainConfig.seq_len = 32",
    ]
    remote = f"gs://{BUCKET}/prepared/beam"
    assert _prepare(remote, *params, workers=2) == 0
    assert _prepare(tmp_path / "local", *params, runner="none") == 0
    fsspec.filesystem("gcs").invalidate_cache()  # the workers wrote what this process listed
    assert prepared.read_manifest(remote) == prepared.read_manifest(tmp_path / "local")
    _, _, theirs = prepared.open_prepared(remote, 32, None, cache_dir=tmp_path / "cache")
    _, _, ours = prepared.open_prepared(tmp_path / "local", 32, None)
    assert len(theirs["train"]) == len(ours["train"]) > 20  # several shards
    for split, source in ours.items():
        for i in range(len(source)):
            assert all(np.array_equal(source[i][k], theirs[split][i][k]) for k in source[i])
