"""`tinylm cmc train` end to end: the template's checkpoint untouched, kill -9 resumes
bit-exactly, the delta is a workdir `sample` reads, and user errors exit 2 before weights load."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers import xla_flags
from tests.support.cmc import (
    DELTA,
    bpe_tokenizer,
    sentencepiece_tokenizer,
    write_model,
    write_records,
)
from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib
from tinylm_jax.data.token_map import read_map
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.errors import DataError
from tinylm_jax.workdir.load import load_workdir

STEPS = ["TrainConfig.num_steps = 6", "CheckpointConfig.every_steps = 2"]


def tinylm(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    program = ["tests.fault_runner", fault] if fault else ["tinylm_jax.cli"]
    env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    return subprocess.run(
        [sys.executable, "-m", *program, *args], capture_output=True, text=True, env=env
    )


def cmc_train(template: Path, delta: Path, data: Path, fault: str | None = None):
    flags = [f"--gin_param={p}" for p in DELTA + STEPS]
    args = ["cmc", "train", f"--template={template}", f"--workdir={delta}", f"--data={data}"]
    return tinylm(*args, *flags, fault=fault)


def digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def delta_params(delta: Path):
    config = config_lib.parse(workdir_config=delta / "config.gin")
    return jax.device_get(load_workdir(config, delta)[1])


@pytest.mark.slow
def test_kill_9_resumes_bit_exactly_and_the_template_is_untouched(tmp_path):
    template = write_model(tmp_path / "template", bpe_tokenizer(tmp_path / "tok"))
    data = write_records(tmp_path / "data.jsonl")
    before = digest(template)
    whole = cmc_train(template, tmp_path / "whole", data)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = cmc_train(template, tmp_path / "killed", data, fault="KILL@3")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = cmc_train(template, tmp_path / "killed", data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from step 2" in resumed.stdout
    assert digest(template) == before
    for a, b in zip(
        jax.tree.leaves(delta_params(tmp_path / "whole")),
        jax.tree.leaves(delta_params(tmp_path / "killed")),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    sample = tinylm(
        "sample", f"--workdir={tmp_path / 'whole'}", "--prompt=# Q:", "--max_new_tokens=3"
    )
    assert sample.returncode == 0, sample.stderr[-3000:]
    # The template with the trained delta at alpha 0 ('base': log_softmax only) decodes
    # greedily as the template alone.
    greedy = ["--prompt=# Q: add 3", "--max_new_tokens=6", "--temperature=0", "--json"]
    alone = tinylm("sample", f"--workdir={template}", *greedy)
    delta = f"--delta={tmp_path / 'whole'}"
    zero = tinylm("sample", f"--workdir={template}", delta, "--alpha=0", *greedy)
    assert alone.returncode == zero.returncode == 0, zero.stderr[-3000:]
    assert alone.stdout.splitlines()[-1] == zero.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "lines, message",
    [("", "holds no records"), ('{"question": "a"}\n', "'prompt' and 'response'")],
)
def test_bad_data_exits_2_before_loading_the_template(tmp_path, capsys, lines, message):
    # The template has a config but no checkpoint: an error about weights would mean the data
    # was checked too late.
    template = tmp_path / "template"
    template.mkdir()
    config = config_lib.parse(gin_params=["ModelConfig.vocab_size = 300"])
    (template / "config.gin").write_text(config.gin_config)
    bpe_tokenizer(template)
    data = tmp_path / "data.jsonl"
    data.write_text(lines)
    argv = ["cmc", "train", f"--template={template}", f"--workdir={tmp_path / 'd'}"]
    assert cli.main([*argv, f"--data={data}"]) == 2
    assert message in capsys.readouterr().err


def test_cmc_map_between_sentencepiece_and_byte_level_bpe(tmp_path, capsys):
    user = sentencepiece_tokenizer(tmp_path / "user")
    delta = bpe_tokenizer(tmp_path / "delta")
    out = tmp_path / "map.json"
    assert cli.main(["cmc", "map", f"--user={user}", f"--delta={delta}", f"--out={out}"]) == 0
    report = json.loads(capsys.readouterr().out)
    user_tok, delta_tok = load_tokenizer(user), load_tokenizer(delta)
    token_map = read_map(out, user_tok, delta_tok)
    assert report["user_tokens"] == user_tok.vocab_size == len(token_map.map_V)
    # Every SentencePiece token but <unk> (byte-level BPE has none) has a match: the byte
    # pieces and `▁` spellings compare as bytes with the `Ġ` spellings.
    unmatched = [user_tok.id_to_piece(i) for i in np.flatnonzero(token_map.map_V < 0)]
    assert unmatched == ["<unk>"]
    for i in np.flatnonzero(np.asarray(token_map.match_V) == "exact"):
        assert user_tok.pieces[i][1] == delta_tok.pieces[token_map.map_V[i]][1]
    with pytest.raises(DataError, match="fingerprints differ"):
        read_map(out, delta_tok, user_tok)


def test_delta_errors_exit_2_before_weights_load(tmp_path, capsys):
    # Neither workdir holds a checkpoint: each error must come from the checks before loading.
    tokenizers = {
        "user": bpe_tokenizer(tmp_path / "tok"),
        "other": sentencepiece_tokenizer(tmp_path / "sp"),
    }
    config = config_lib.parse(gin_params=["ModelConfig.vocab_size = 300"]).gin_config
    for name in ("user", "delta", "other_delta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.gin").write_text(config)
        source = tokenizers["other" if name == "other_delta" else "user"]
        for f in source.iterdir():
            (tmp_path / name / f.name).write_bytes(f.read_bytes())
    user, delta, other = (str(tmp_path / n) for n in ("user", "delta", "other_delta"))

    def error(*flags: str) -> str:
        assert cli.main(["eval", f"--workdir={user}", *flags]) == 2
        return capsys.readouterr().err

    assert "must be a finite number" in error(f"--delta={delta}", "--alpha=nan")
    (tmp_path / "delta" / "cmc.json").write_text(json.dumps({"tokenizer_fingerprint": "0" * 64}))
    assert "trained beside a template whose tokenizer differs" in error(f"--delta={delta}")
    out = tmp_path / "map.json"
    assert cli.main(["cmc", "map", f"--user={other}", f"--delta={user}", f"--out={out}"]) == 0
    capsys.readouterr()
    assert "fingerprints differ" in error(f"--delta={other}", f"--token_map={out}")
