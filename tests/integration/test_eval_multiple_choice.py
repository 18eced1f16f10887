"""Multiple-choice scoring: task files, harness tokenization, log-likelihoods, acc / acc_norm."""

import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers import TINY_DATA
from tinylm_jax.cli import main as cli
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.eval import multiple_choice as mc

SAMPLE_TASK = Path(__file__).resolve().parents[1] / "data" / "mc_sample.jsonl"


@pytest.fixture(scope="module")
def tokenizer(data_dir) -> Tokenizer:
    # TINY_DATA's corpus and tokenizer (shared through the session's data cache).
    config = DataConfig(max_documents=60, vocab_size=512, validation_fraction=0.05)
    assert f"DataConfig.max_documents = {config.max_documents}" in TINY_DATA
    return load_tokenizer(pipeline.train_tokenizer_for(config))


def _run(max_seq_len: int = 64, tie: bool = True):
    config = ModelConfig(
        vocab_size=512,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=64,
        max_seq_len=max_seq_len,
        tie_embeddings=tie,
    )
    return build_run(RunConfig(model=config, train=TrainConfig(batch_size=8, seq_len=32)))


def test_encode_pair_follows_the_harness(tokenizer):
    context, continuation = mc.encode_pair(tokenizer, "Answer: ", "yes")
    assert context == [tokenizer.bos_id] + tokenizer.encode("Answer:")
    assert context[1:] + continuation == tokenizer.encode("Answer: yes")  # space moves over
    assert tokenizer.decode(continuation) == " yes"


def test_loglikelihoods_match_a_direct_forward_pass(tokenizer, gin_clean):
    run = _run(max_seq_len=64)
    with run_context(run):
        params = init_state(run.init_fn, 1, run.shardings).params
    rng = np.random.default_rng(0)
    # 11 requests: more than one batch of 8, several length buckets, one truncated to 64 + 1.
    lengths = [(3, 1), (1, 5), (20, 4), (7, 7), (30, 2), (2, 2), (12, 9), (60, 10), (5, 1)]
    lengths += [(40, 3), (16, 16)]
    requests = [
        ([1] + rng.integers(4, 512, c - 1).tolist(), rng.integers(4, 512, x).tolist())
        for c, x in lengths
    ]
    got = mc.loglikelihoods(run, params, requests)

    # Reference: every request right-padded to 64 inputs in one plain forward pass.
    sequences = [(c + x)[-65:] for c, x in requests]
    inputs = np.zeros((len(requests), 64), np.int32)
    for row, seq in enumerate(sequences):
        inputs[row, : len(seq) - 1] = seq[:-1]
    logits, _ = jax.jit(run.model.apply)({"params": jax.device_get(params)}, inputs)
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    for row, ((_, continuation), seq) in enumerate(zip(requests, sequences, strict=True)):
        scored = range(len(seq) - 1 - len(continuation), len(seq) - 1)
        expected = sum(float(logp[row, i, seq[i + 1]]) for i in scored)
        assert got[row] == pytest.approx(expected, abs=1e-4)


def test_planted_answers_and_byte_length_normalisation(tokenizer, tmp_path, gin_clean):
    """A model that predicts byte piece <0x01> whatever the context (logit L, others 0)."""
    planted, L = tokenizer.encode("\x01"), 5.0
    assert len(planted) == 1 and tokenizer.encode("\x01" * 8) == planted * 8
    run = _run(tie=False)
    params = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), run.abstract.params)
    params["token_embed"][:] = 1.0  # every position's hidden state is the all-ones vector ...
    params["final_norm"]["scale"][:] = 1.0
    params["lm_head"][:, planted[0]] = L / 32  # ... so the planted logit is ~L
    logp = L - math.log(math.exp(L) + 511)  # of <0x01>; any other token: logp - L

    task = tmp_path / "planted.jsonl"
    rows = [
        {"context": "Pick one:", "choices": ["\x02", "\x01"], "answer": 1},
        # 8 likely bytes lose to 1 unlikely one in total, win per byte: acc wrong, acc_norm right.
        {"context": "Pick one:", "choices": ["\x01" * 8, "\x02"], "answer": 0},
    ]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert 8 * logp < logp - L < logp
    requests = [mc.encode_pair(tokenizer, r["context"], c) for r in rows for c in r["choices"]]
    np.testing.assert_allclose(
        mc.loglikelihoods(run, params, requests),
        [logp - L, logp, 8 * logp, logp - L],
        atol=1e-3,
    )
    assert mc.score_task(run, params, tokenizer, mc.load_task(task)) == {
        "acc": 0.5,
        "acc_norm": 1.0,
        "n": 2,
    }


def test_eval_cli_scores_a_model_trained_on_the_answers(tokenizer, tmp_path, capsys):
    """A tiny model briefly trained on the sample task's right answers picks all of them."""
    corpus = tmp_path / "answers.jsonl"
    rows = [json.loads(line) for line in SAMPLE_TASK.read_text().splitlines()]
    texts = [r["context"] + r["choices"][r["answer"]] for r in rows] * 40
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    workdir = tmp_path / "run"
    params = [
        "DataConfig.dataset = 'text_files'",
        f"DataConfig.paths = ('{corpus}',)",
        f"DataConfig.tokenizer = '{tokenizer.path}'",
        "DataConfig.validation_fraction = 0.2",
        "TrainConfig.num_steps = 120",  # well past the point where all five are learned
        "TrainConfig.batch_size = 8",
        "TrainConfig.seq_len = 32",
        "TrainConfig.eval_steps = 1",
        "OptimizerConfig.learning_rate = 0.01",
        "CheckpointConfig.async_save = False",
    ]
    args = ["--gin_file=models/tiny_test.gin", *[f"--gin_param={p}" for p in params]]
    assert cli.main(["train", f"--workdir={workdir}", *args]) == 0
    capsys.readouterr()

    args = ["eval", f"--workdir={workdir}", "--eval_steps=1", f"--task={SAMPLE_TASK}"]
    assert cli.main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["eval_bits_per_byte"] > 0
    scores = result["tasks"]["mc_sample"]
    assert scores["n"] == 5 and scores["acc"] == 1.0 and 0 <= scores["acc_norm"] <= 1
