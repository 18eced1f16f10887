"""Shared test helpers: tiny configs and gin parameter lists for short real runs."""

from __future__ import annotations

import json
from pathlib import Path

# A small real corpus (the first stdlib modules) and a matching small tokenizer.
TINY_DATA = [
    "DataConfig.dataset = 'python_stdlib'",
    "DataConfig.max_documents = 60",
    "DataConfig.vocab_size = 512",
    "DataConfig.validation_fraction = 0.05",
]


def tiny_run(steps: int = 4, batch_size: int = 8, seq_len: int = 32) -> list[str]:
    return TINY_DATA + [
        f"TrainConfig.num_steps = {steps}",
        f"TrainConfig.batch_size = {batch_size}",
        f"TrainConfig.seq_len = {seq_len}",
        "TrainConfig.log_every = 1",
        "TrainConfig.eval_steps = 2",
        "CheckpointConfig.async_save = False",
    ]


def read_metrics(workdir: str | Path) -> list[dict]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def train_losses(workdir: str | Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


def write_byte_level_bpe(directory: str | Path, texts: list[str], vocab_size: int) -> Path:
    """Trains a GPT-2-style byte-level BPE `tokenizer.json` on `texts` with the `tokenizers`
    library, plus a `tokenizer_config.json` declaring its EOS (no BOS, as GPT-2 has none) and
    pad; returns the directory."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "bos_token": None}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory
