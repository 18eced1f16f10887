"""Hugging Face interop: export → transformers, import ← transformers, greedy decoding parity;
checkpoints whose tokenizer is a byte-level BPE tokenizer.json, end to end."""

import inspect
import json
import shutil
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
import tokenizers

from tests.helpers import tiny_run, write_byte_level_bpe
from tests.support.hf import TEXTS, torch, transformers
from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.interop import llama, safetensors_io
from tinylm_jax.model.transformer import Transformer
from tinylm_jax.workdir.load import load_workdir


def _gin(params: list[str]) -> list[str]:
    return [f"--gin_param={p}" for p in params]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A tiny GQA model with an untied head, trained for 2 steps by `tinylm train`.

    A wide init spreads the logits, so greedy decoding has no near-ties for rounding to flip.
    """
    workdir = tmp_path_factory.mktemp("interop") / "run"
    args = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin"]
    args += _gin(tiny_run(steps=2) + ["ModelConfig.tie_embeddings = False"])
    args += _gin(["ModelConfig.init_std = 0.2"])
    assert cli.main(args) == 0
    return workdir


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "hf"
    assert cli.main(["export-hf", f"--workdir={trained}", f"--out={out}"]) == 0
    return out


def _ours(workdir):
    """(model, params, tokenizer) of a workdir, as `tinylm eval/sample` load it."""
    config = config_lib.parse(workdir_config=workdir / "config.gin")
    run, params, tokenizer = load_workdir(config, workdir)
    return run.model, jax.device_get(params), tokenizer


def _logits_match(model, params, hf_model, vocab_size: int) -> None:
    ids = np.random.default_rng(0).integers(0, vocab_size, (2, 48))
    with torch.no_grad():
        expected = hf_model(torch.tensor(ids)).logits.numpy()
    logits, _ = model.apply({"params": params}, ids)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=1e-4)


def _hf_model(path):
    return transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_export_matches_transformers(trained, exported):
    files = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.model", "tokenizer.json"} <= files
    assert {"tokenizer_config.json"} <= files
    model, params, tokenizer = _ours(trained)
    _logits_match(model, params, _hf_model(exported), model.config.vocab_size)

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert hf_tokenizer(text).input_ids == [tokenizer.bos_id] + ids, text
        assert hf_tokenizer.decode(ids) == tokenizer.decode(ids) == text
    assert hf_tokenizer.eos_token_id == tokenizer.eos_id
    assert hf_tokenizer.pad_token_id == tokenizer.pad_id


def _resolved_model_config(workdir) -> ModelConfig:
    config = config_lib.parse(workdir_config=workdir / "config.gin").model
    return config.replace(
        head_dim=config.resolved_head_dim,
        n_kv_heads=config.resolved_n_kv_heads,
        ffn_dim=config.resolved_ffn_dim,
        ffn_ratio=0.0,
        ffn_multiple_of=0,
    )


def _tensors(path) -> dict[str, np.ndarray]:
    reader = safetensors_io.TensorReader(path)
    return {name: reader.read(name) for name in reader.names}


def test_import_of_export_is_identical_unrolled_and_scanned(trained, exported, tmp_path):
    back = tmp_path / "back"
    assert cli.main(["import-hf", f"--hf_dir={exported}", f"--workdir={back}"]) == 0
    original, imported = ckpt.load_params(trained)[0], ckpt.load_params(back)[0]
    jax.tree_util.tree_map(np.testing.assert_array_equal, imported, original)
    assert (back / "tokenizer.model").read_bytes() == (trained / "tokenizer.model").read_bytes()

    assert _resolved_model_config(back) == _resolved_model_config(trained)

    # Scanned layers (stacked under `layers`) import and export to the very same tensors.
    scanned, again = tmp_path / "scanned", tmp_path / "again"
    args = ["import-hf", f"--hf_dir={exported}", f"--workdir={scanned}"]
    assert cli.main(args + ["--gin_param=ModelConfig.scan_layers = True"]) == 0
    assert "layers" in ckpt.load_params(scanned)[0]
    assert cli.main(["export-hf", f"--workdir={scanned}", f"--out={again}"]) == 0
    first, second = _tensors(exported), _tensors(again)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(second[name], first[name])


def test_import_random_transformers_llama_with_gqa_and_tied_embeddings(trained, tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        rope_theta=500.0,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(config).eval()
    hf_dir = tmp_path / "hf"
    hf_model.save_pretrained(hf_dir, max_shard_size="40KB")  # sharded, with an index
    assert (hf_dir / safetensors_io.INDEX_FILE).exists()
    shutil.copyfile(trained / "tokenizer.model", hf_dir / "tokenizer.model")

    workdir = tmp_path / "imported"
    assert cli.main(["import-hf", f"--hf_dir={hf_dir}", f"--workdir={workdir}"]) == 0
    model, params, _ = _ours(workdir)
    assert model.config.tie_embeddings and "lm_head" not in params
    assert (model.config.n_kv_heads, model.config.rope_theta) == (2, 500.0)
    _logits_match(model, params, hf_model, 512)

    # Continued pretraining starts from the imported step-0 checkpoint.
    assert cli.main(["train", f"--workdir={workdir}", *_gin(tiny_run(steps=1))]) == 0
    assert ckpt.load_params(workdir)[1] == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "gpt2"}, "model_type 'gpt2'"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling"),
        ({"attention_bias": True}, "attention_bias=true"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ],
)
def test_unsupported_checkpoints_fail_clearly(tmp_path, capsys, change, message):
    config = {
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
    }
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    code = cli.main(["import-hf", f"--hf_dir={tmp_path}", f"--workdir={tmp_path / 'w'}"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_greedy_sample_equals_transformers_generate(trained, exported, capsys):
    prompts = ["import os", "def main(", "naïve café"]
    args = ["sample", f"--workdir={trained}", "--max_new_tokens=12", "--temperature=0", "--json"]
    assert cli.main(args + [f"--prompt={p}" for p in prompts]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    hf_model = _hf_model(exported)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    for prompt, result in zip(prompts, ours, strict=True):
        ids = hf_tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = hf_model.generate(ids, do_sample=False, max_new_tokens=12)
        completion = out[0, ids.shape[1] :].tolist()
        eos = hf_tokenizer.eos_token_id
        completion = completion[: completion.index(eos)] if eos in completion else completion
        assert result["completion_ids"] == completion, prompt


@pytest.fixture(scope="module")
def bpe_checkpoint(tmp_path_factory):
    """A random Llama saved as `transformers` would, whose only tokenizer is a byte-level BPE
    tokenizer.json (no tokenizer.model); config.json and safetensors by our own export code."""
    corpus = [inspect.getsource(inspect)] + TEXTS
    hf_dir = write_byte_level_bpe(tmp_path_factory.mktemp("bpe_llama"), corpus, vocab_size=320)
    tokenizer = load_tokenizer(hf_dir)
    # A vocabulary padded past the tokenizer's 320 ids, as real checkpoints often are.
    config = ModelConfig(vocab_size=384, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2)
    config = config.replace(ffn_dim=64, max_seq_len=256, tie_embeddings=False)
    abstract = jax.eval_shape(
        lambda: Transformer(config).init(jax.random.key(0), np.zeros((1, 4), np.int32))
    )["params"]
    rng = np.random.default_rng(0)
    # Unit norm scales and wide weights: spread logits, so greedy decoding has no near-ties.
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: (
            np.ones(leaf.shape, np.float32)
            if "norm" in jax.tree_util.keystr(path)
            else rng.normal(0, 0.2, leaf.shape).astype(np.float32)
        ),
        nn.unbox(abstract),
    )
    safetensors_io.write_tensors(llama.to_hf(params, config), hf_dir, 1 << 30)
    hf_config = llama.hf_config(config, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    (hf_dir / "config.json").write_text(json.dumps(hf_config))
    return hf_dir


def _text_files_corpus(directory: Path) -> tuple[list[str], str]:
    """Gin params of a 12-document text_files corpus whose validation split is exactly one
    tiny document (the one with the lowest split score) that fits one packed record; returns
    (params, that document)."""
    from tinylm_jax.data.documents import split_score

    directory.mkdir()
    paths = []
    for i in range(12):
        paths.append(directory / f"doc{i}.txt")
        paths[-1].write_text(f"{TEXTS[i % 2]}#{i}: naïve café — 東京 😀\n")
    scores = sorted((split_score(str(p)), p) for p in paths)
    fraction = (scores[0][0] + scores[1][0]) / 2
    params = [
        "DataConfig.dataset = 'text_files'",
        f"DataConfig.paths = ('{directory}/*.txt',)",
        f"DataConfig.validation_fraction = {fraction}",
        "TrainConfig.seq_len = 128",
        "TrainConfig.batch_size = 8",
        "TrainConfig.eval_batch_size = 8",
    ]
    return params, scores[0][1].read_text()


def test_tokenizer_json_checkpoint_import_sample_eval_train_export(
    bpe_checkpoint, tmp_path, capsys
):
    hf = bpe_checkpoint
    workdir = tmp_path / "imported"
    assert cli.main(["import-hf", f"--hf_dir={hf}", f"--workdir={workdir}"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == str(workdir / "tokenizer.json")
    files = {p.name for p in workdir.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json"} <= files and "tokenizer.model" not in files
    config = config_lib.parse(workdir_config=workdir / "config.gin")
    assert config.data.tokenizer == str((workdir / "tokenizer.json").absolute())
    model, params, tokenizer = _ours(workdir)
    original = tokenizers.Tokenizer.from_file(str(hf / "tokenizer.json"))

    # Greedy sampling: each id is the argmax of the model's forward pass over what precedes it
    # (recomputed here in one pass without a cache), up to 8 ids or an EOS.
    prompt = "def main(argv): naïve"
    args = ["sample", f"--workdir={workdir}", "--max_new_tokens=8", "--temperature=0", "--json"]
    assert cli.main(args + [f"--prompt={prompt}"]) == 0
    result = json.loads(capsys.readouterr().out)
    completion = result["completion_ids"]
    ids = [tokenizer.eos_id] + original.encode(prompt, add_special_tokens=False).ids  # BOS = EOS
    logits, _ = model.apply({"params": params}, np.array([ids + completion]))
    greedy = np.argmax(np.asarray(logits[0, len(ids) - 1 :]), axis=-1).tolist()
    assert greedy[: len(completion)] == completion
    assert len(completion) == 8 or greedy[len(completion)] == tokenizer.eos_id
    assert result["completion"] == original.decode(completion)

    # Bits per byte of the one validation document, by hand: [EOS as BOS] text [EOS].
    data_params, text = _text_files_corpus(tmp_path / "corpus")
    args = ["eval", f"--workdir={workdir}", *_gin(data_params)]
    assert cli.main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    ids = [tokenizer.eos_id] + original.encode(text, add_special_tokens=False).ids
    ids.append(tokenizer.eos_id)
    logits, _ = model.apply({"params": params}, np.array([ids[:-1]]))
    log_probs = jax.nn.log_softmax(np.asarray(logits[0], np.float64), axis=-1)
    nats = -sum(float(log_probs[k, t]) for k, t in enumerate(ids[1:]))
    assert metrics["eval_tokens"] == len(ids) - 1
    expected_bpb = nats / np.log(2) / len(text.encode("utf-8"))
    np.testing.assert_allclose(metrics["eval_bits_per_byte"], expected_bpb, rtol=1e-4)

    # Continued pretraining, then export: the very same tokenizer.json, which AutoTokenizer loads.
    train = ["train", f"--workdir={workdir}", *_gin(data_params + ["TrainConfig.num_steps = 2"])]
    assert cli.main(train + _gin(["TrainConfig.eval_steps = 0", "TrainConfig.log_every = 1"])) == 0
    assert ckpt.load_params(workdir)[1] == 2
    exported = tmp_path / "exported"
    assert cli.main(["export-hf", f"--workdir={workdir}", f"--out={exported}"]) == 0
    assert (exported / "tokenizer.json").read_bytes() == (hf / "tokenizer.json").read_bytes()
    auto = transformers.AutoTokenizer.from_pretrained(exported)
    for text in TEXTS:
        ids = original.encode(text, add_special_tokens=False).ids
        assert auto(text, add_special_tokens=False).input_ids == ids == tokenizer.encode(text)
    assert auto.eos_token_id == tokenizer.eos_id and auto.pad_token_id == tokenizer.pad_id

    # A parent for parameter inheritance as it is: a one-layer child keeps its tokenizer.
    fields = llama.model_fields(json.loads((hf / "config.json").read_text()))
    shape = [f"ModelConfig.{k} = {v!r}" for k, v in fields.items() if k != "n_layers"]
    child = tmp_path / "child"
    args = ["inherit", f"--parent={workdir}", f"--workdir={child}", *_gin(data_params + shape)]
    assert cli.main(args + _gin(["ModelConfig.n_layers = 1", "TrainConfig.eval_steps = 0"])) == 0
    assert load_tokenizer(child).fingerprint == tokenizer.fingerprint
    assert (child / "tokenizer.json").read_bytes() == (hf / "tokenizer.json").read_bytes()
