"""Prepared datasets as training reads them: the checks that fail before any work, and
weighted mixtures of them (errors; a run killed and resumed bit-exactly)."""

import dataclasses
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers import tiny_run, train_losses, write_byte_level_bpe
from tests.support.prepared import write_prepared
from tinylm_jax.config.data import DataConfig
from tinylm_jax.data import pipeline, prepared
from tinylm_jax.errors import DataError

# The corpus of the rounds tests (TINY_DATA on 12 documents): the session cache is shared.
CONFIG = DataConfig(
    dataset="python_stdlib", max_documents=12, vocab_size=512, validation_fraction=0.05
)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory, data_dir):
    """Today's packed records laid out as a one-shard-per-split prepared dataset."""
    data = pipeline.prepare_data(CONFIG, seq_len=32)
    out = write_prepared(data, tmp_path_factory.mktemp("prepared"))
    return out, data


def test_a_prepared_dataset_reads_as_the_records_it_holds(prepared_dir):
    out, data = prepared_dir
    config = DataConfig(prepared=str(out), dataset="never_built")  # nothing is built
    read = pipeline.prepare_data(config, seq_len=32)
    assert read.tokenizer.fingerprint == data.tokenizer.fingerprint
    assert len(read.train) == len(data.train) > 0
    for i in (0, len(data.train) - 1):
        assert (read.train[i]["tokens"] == data.train[i]["tokens"]).all()
        assert read.train[i]["id"] == i
    assert read.stats["train"]["documents"] == data.stats["train"]["documents"]


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
    ]
    argv = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin"]
    argv += [f"--gin_param={p}" for p in params]
    return subprocess.run(
        [sys.executable, "-m", *program, *argv], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_mixture_trains_is_killed_and_resumes_bit_exactly(prepared_dir, tmp_path):
    out, _ = prepared_dir
    mixture = (("prose", 0.7, str(out)), ("code", 0.3, str(out)))
    done = _train(tmp_path / "uninterrupted", mixture)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = _train(tmp_path / "run", mixture, fault="KILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _train(tmp_path / "run", mixture)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 2" in resumed.stdout
    expected, logged = train_losses(tmp_path / "uninterrupted"), train_losses(tmp_path / "run")
    assert set(range(1, 7)) <= logged.keys()
    assert logged == {step: expected[step] for step in logged}  # the mixture state resumed
