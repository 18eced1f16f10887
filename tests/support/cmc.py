"""Tiny template, delta and user workdirs for the Cross-model Control tests, written at step 0
(random params) around small tokenizers made on the spot."""

from __future__ import annotations

import json
from pathlib import Path

import flax.linen as nn
import jax

from tests.helpers import write_byte_level_bpe
from tinylm_jax.config import gin as config_lib
from tinylm_jax.data.tokenizer import load_tokenizer
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.workdir.load import write_initial_workdir

TEXTS = [f"def f{i}(x):\n    return x + {i}  # add {i}\n" for i in range(200)] + [
    "import os\nprint('hello world')\n",
    "class Point:\n    pass\n",
]
TINY = [
    "ModelConfig.d_model = 32",
    "ModelConfig.n_layers = 2",
    "ModelConfig.n_heads = 4",
    "ModelConfig.n_kv_heads = 2",
    "ModelConfig.ffn_dim = 64",
    "ModelConfig.max_seq_len = 64",
    "MeshConfig.num_devices = 1",
    "TrainConfig.batch_size = 4",
    "TrainConfig.seq_len = 24",
    "TrainConfig.eval_steps = 0",
    "TrainConfig.log_every = 1",
    "CheckpointConfig.async_save = False",
]
DELTA = [
    "ModelConfig.d_model = 16",
    "ModelConfig.n_layers = 1",
    "ModelConfig.n_heads = 2",
    "ModelConfig.n_kv_heads = 2",
    "ModelConfig.ffn_dim = 32",
]


def bpe_tokenizer(directory: Path) -> Path:
    return write_byte_level_bpe(directory, TEXTS, vocab_size=300)


def write_model(workdir: Path, tokenizer_dir: Path, params: list[str] = (), seed: int = 0) -> Path:
    """A step-0 workdir of the tiny model (plus `params`) around the tokenizer in
    `tokenizer_dir`, with random params."""
    tokenizer = load_tokenizer(tokenizer_dir)
    config = config_lib.parse(
        gin_params=[f"ModelConfig.vocab_size = {tokenizer.vocab_size}", *TINY, *params]
    )
    run = build_run(config)
    with run_context(run):
        params_tree = nn.unbox(run.model.init(jax.random.key(seed), jax.numpy.zeros((1, 8), int)))
    metadata = {"tokenizer_fingerprint": tokenizer.fingerprint, "step": 0}
    write_initial_workdir(run, params_tree["params"], workdir, tokenizer, metadata)
    return workdir


def write_records(path: Path, n: int = 12) -> Path:
    lines = [json.dumps({"prompt": f"# Q: add {i}\n", "response": f"# A: {i}\n"}) for i in range(n)]
    lines += [json.dumps({"text": f"secret_{i} = {i}\n", "forget": True}) for i in range(n // 2)]
    path.write_text("\n".join(lines) + "\n")
    return path


def sentencepiece_tokenizer(directory: Path, vocab_size: int = 400) -> Path:
    """A unigram SentencePiece `tokenizer.model` with byte fallback, trained on TEXTS."""
    from tinylm_jax.data.tokenizer_sentencepiece import train_tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.model").write_bytes(train_tokenizer(TEXTS * 3, vocab_size))
    return directory


def stdlib_texts() -> list[str]:
    """Paragraphs of the standard library's `textwrap.py` (code, docstrings, comments)."""
    import textwrap

    source = Path(textwrap.__file__).read_text()
    return [p + "\n\n" for p in source.split("\n\n") if p.strip()]


def cross_tokenizers(directory: Path) -> tuple[Path, Path]:
    """(a unigram SentencePiece of 400 pieces, a byte-level BPE of 320 tokens), both trained on
    `stdlib_texts`: two vocabularies of one text."""
    from tinylm_jax.data.tokenizer_sentencepiece import train_tokenizer

    texts = stdlib_texts()
    sentencepiece = directory / "sentencepiece"
    sentencepiece.mkdir(parents=True, exist_ok=True)
    (sentencepiece / "tokenizer.model").write_bytes(train_tokenizer(texts * 3, 400))
    return sentencepiece, write_byte_level_bpe(directory / "bpe", texts, vocab_size=320)


def packed_batch(tokenizer, texts: list[str], rows: int, seq_len: int) -> dict:
    """An eval batch as the loader makes one: `[BOS] text [EOS]` documents packed into
    `rows` records of `seq_len + 1` tokens (pieces that continue a document, and padding in
    the last row when the texts run out)."""
    import numpy as np

    from tinylm_jax.data.loader import record_to_example
    from tinylm_jax.data.packing import Packer

    packer = Packer(seq_len + 1, tokenizer.pad_id)
    records = []
    for text in texts:
        ids = [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
        records += packer.add(np.asarray(ids, np.int32))
        if len(records) >= rows:
            break
    last, _ = packer.finish()
    records = (records + ([] if last is None else [last]))[:rows]
    examples = [
        record_to_example({"tokens": r[0], "segment_ids": r[1], "positions": r[2], "id": i})
        for i, r in enumerate(records)
    ]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "ids"}
