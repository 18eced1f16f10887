"""Prepared datasets as training reads them: the checks that fail before any work, and
weighted mixtures of them (errors; a run killed and resumed bit-exactly)."""

import dataclasses
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from etils import epath

from tests.helpers import read_metrics, tiny_run, write_byte_level_bpe
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline, prepare_single_host, prepared
from tinylm_jax.errors import DataError

# The corpus of the rounds tests (TINY_DATA on 12 documents): the session cache is shared.
CONFIG = DataConfig(
    dataset="python_stdlib", max_documents=12, vocab_size=512, validation_fraction=0.05
)
SHARDED = dataclasses.replace(CONFIG, records_per_shard=10)  # several train shards


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, data_dir):
    """The single-host writer's prepared dataset (several train shards) and today's data."""
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare_single_host.prepare(SHARDED, 32, out)
    assert len(manifest["splits"]["train"]["shards"]) > 1
    return out, pipeline.prepare_data(CONFIG, seq_len=32)


def test_a_prepared_dataset_holds_the_single_host_records(prepared_dir):
    out, data = prepared_dir
    config = DataConfig(prepared=str(out), dataset="never_built")  # nothing is built
    read = pipeline.prepare_data(config, seq_len=32)
    assert read.tokenizer.fingerprint == data.tokenizer.fingerprint
    for split in ("train", "validation"):
        ours, theirs = getattr(data, split), getattr(read, split)
        assert len(ours) == len(theirs) > 0
        for i in range(len(ours)):
            assert all(np.array_equal(ours[i][k], theirs[i][k]) for k in ours[i]), (split, i)
    assert read.stats["train"]["documents"] == data.stats["train"]["documents"]
    again = prepare_single_host.prepare(SHARDED, 32, out)
    assert again == prepared.read_manifest(out)  # reused as it is
    with pytest.raises(DataError, match="other inputs"):
        prepare_single_host.prepare(CONFIG, 64, out)


def test_a_remote_datasets_local_copy_is_made_once_and_checked(prepared_dir, tmp_path):
    out, _ = prepared_dir
    manifest = prepared.read_manifest(out)
    staged = pathlib.Path(prepared.stage_locally(epath.Path(out), manifest, tmp_path))
    name = manifest["splits"]["train"]["shards"][0]
    assert (staged / name).read_bytes() == (out / name).read_bytes()
    stamp = (staged / name).stat().st_mtime_ns
    assert prepared.stage_locally(epath.Path(out), manifest, tmp_path) == str(staged)
    assert (staged / name).stat().st_mtime_ns == stamp  # reused, not copied again
    (staged / name).write_bytes(b"truncated")
    assert prepared.stage_locally(epath.Path(out), manifest, tmp_path) == str(staged)
    assert (staged / name).read_bytes() == (out / name).read_bytes()  # a damaged copy is redone


def test_mismatches_and_missing_shards_fail_before_work(prepared_dir, tmp_path):
    out, data = prepared_dir
    with pytest.raises(DataError, match="seq_len=32.*TrainConfig.seq_len = 32"):
        pipeline.prepare_data(DataConfig(prepared=str(out)), seq_len=64)
    other = write_byte_level_bpe(tmp_path / "bpe", ["def f(x):\n    return x"] * 20, 300)
    with pytest.raises(DataError, match="different tokenizer"):
        pipeline.prepare_data(DataConfig(prepared=str(out), tokenizer=str(other)), seq_len=32)
    pipeline.prepare_data(DataConfig(prepared=str(out), tokenizer=data.tokenizer.path), 32)
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / prepared.shard_name("validation", 0, 1)).unlink()
    with pytest.raises(DataError, match="missing 1 shard.*validation"):
        pipeline.prepare_data(DataConfig(prepared=str(broken)), seq_len=32)
    with pytest.raises(DataError, match="not a prepared dataset"):
        pipeline.prepare_data(DataConfig(prepared=str(tmp_path)), seq_len=32)


def test_a_mixture_of_prepared_datasets_and_its_errors(prepared_dir, tmp_path):
    out, data = prepared_dir
    config = DataConfig(mixture=(("prose", 0.7, str(out)), ("code", 0.3, str(out))))
    mixed = pipeline.prepare_data(config, seq_len=32)
    assert len(mixed.train) == 2 * len(data.train)
    assert len(mixed.validation) == 2 * len(data.validation)
    assert set(mixed.stats["sources"]) == {"prose", "code"}
    with pytest.raises(DataError, match="weights must be > 0; got code=0.0"):
        pipeline.prepare_data(
            DataConfig(mixture=(("prose", 1.0, str(out)), ("code", 0.0, str(out)))), 32
        )
    with pytest.raises(DataError, match="not both"):
        pipeline.prepare_data(dataclasses.replace(config, prepared=str(out)), 32)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    shutil.rmtree(other / prepared.TOKENIZER_DIR)
    write_byte_level_bpe(other / prepared.TOKENIZER_DIR, ["def f(x):\n    return x"] * 20, 300)
    with pytest.raises(DataError, match="'code'.*another tokenizer"):
        pipeline.prepare_data(
            DataConfig(mixture=(("prose", 1.0, str(out)), ("code", 1.0, str(other)))), 32
        )


def _train(workdir, mixture, fault=None):
    program = ["tests.fault_runner", fault] if fault else ["tinylm_jax.cli"]
    params = [
        *tiny_run(steps=6),
        "DataConfig.max_documents = 12",
        f"DataConfig.mixture = {mixture!r}",
        "CheckpointConfig.every_steps = 2",
        "TrainConfig.eval_every = 0",
        "RoundsConfig.num_rounds = 2",  # round 2 replays records by their place in the mixture
        "RoundsConfig.partitions = 2",
        "RoundsConfig.score_batch_size = 64",
    ]
    argv = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin"]
    argv += [f"--gin_param={p}" for p in params]
    return subprocess.run(
        [sys.executable, "-m", *program, *argv], capture_output=True, text=True, timeout=600
    )


def _train_records(workdir) -> dict[int, dict]:
    return {r["step"]: r for r in read_metrics(workdir) if "loss" in r}


@pytest.mark.slow
def test_a_two_round_mixture_run_counts_tokens_per_source_and_resumes_bit_exactly(
    prepared_dir, tmp_path
):
    out, _ = prepared_dir
    mixture = (("prose", 0.7, str(out)), ("code", 0.3, str(out)))
    done = _train(tmp_path / "uninterrupted", mixture)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = _train(tmp_path / "run", mixture, fault="KILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _train(tmp_path / "run", mixture)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 2" in resumed.stdout
    assert "round 2/2: steps 4-6 on" in resumed.stdout, resumed.stdout[-2000:]
    expected, logged = _train_records(tmp_path / "uninterrupted"), _train_records(tmp_path / "run")
    assert set(range(1, 7)) <= logged.keys()
    fields = ("loss", "tokens/prose", "tokens/code")
    for step, record in logged.items():  # the mixture state and the counts resumed exactly
        assert {k: record[k] for k in fields} == {k: expected[step][k] for k in fields}, step
    drawn = [expected[s]["tokens/prose"] + expected[s]["tokens/code"] for s in range(1, 7)]
    assert all(0 < drawn[i] - drawn[i - 1] <= 8 * 32 for i in range(1, 6))  # batch 8 x 32


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_reading_their_own_rows_count_the_whole_batchs_tokens(prepared_dir, tmp_path):
    from tests.integration.test_multiprocess_resume import train_two_processes

    out, _ = prepared_dir
    mixture = (("prose", 0.7, str(out)), ("code", 0.3, str(out)))
    params = [
        "TrainConfig.num_steps = 4",
        "TrainConfig.eval_steps = 0",
        "TrainConfig.data_sharding = 'process'",  # each process counts only its own rows
        f"DataConfig.mixture = {mixture!r}",
    ]
    results = train_two_processes(
        tmp_path / "run", tmp_path / "xla_cache", extra=[f"--gin_param={p}" for p in params]
    )
    for code, output, _ in results:
        assert code == 0, output[-3000:]
    records = _train_records(tmp_path / "run")
    drawn = [0] + [records[s]["tokens/prose"] + records[s]["tokens/code"] for s in range(1, 5)]
    # Each step adds the global batch (8 rows x 32 targets, less a last record's padding),
    # not one process's half of it.
    assert all(128 < step <= 8 * 32 for step in np.diff(drawn)), drawn


def test_the_single_host_runner_refuses_beam_options(tmp_path, gin_clean, capsys):
    from tinylm_jax.cli import main as cli

    argv = ["data", "prepare", f"--out={tmp_path / 'out'}", "--runner=none", "--", "--project=p"]
    assert cli.main(argv) == 2
    assert "takes no Beam options" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
