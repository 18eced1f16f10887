"""Cross-model Control demonstration (docs/cmc.md): one delta model, trained once beside a
template, applied to the template, to a user model of another size, and to a user model of that
size on another tokenizer (a byte-level BPE `tokenizer.json` trained on the same corpus).

    python benchmarks/cmc_demo.py --root=/tmp/cmc_demo [--steps=150 --delta_steps=200]

Task: answer a `# Q: what is A + B?` comment with a one-line `# A: <number>` (the shape is
counted, not the sum). Prints the BPE -> SentencePiece token map's report and a markdown table:
for each model and alpha, the rate of completions whose first line has that shape over 100
held-out prompts, and held-out bits per byte on the python_stdlib validation split (the retain
text). Workdirs already trained under --root are reused.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

DATA = [
    "DataConfig.dataset = 'python_stdlib'",
    "DataConfig.max_documents = 120",
    "DataConfig.vocab_size = 512",
    "TrainConfig.batch_size = 8",
    "TrainConfig.seq_len = 64",
    "TrainConfig.eval_steps = 0",
    "TrainConfig.log_every = 50",
    "MeshConfig.num_devices = 1",
    "CheckpointConfig.async_save = False",
]
SHAPE = re.compile(r"^# A: \d+\s*$")


def tinylm(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tinylm_jax.cli", *args], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"tinylm {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def gin(params: list[str]) -> list[str]:
    return [f"--gin_param={p}" for p in params]


def train_bpe(directory: Path, vocab_size: int) -> Path:
    """A byte-level BPE on the demo corpus's training split (the texts the SentencePiece
    tokenizer was trained on)."""
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.data.corpus import iter_texts
    from tinylm_jax.data.pipeline import corpus_and_tokenizer
    from tinylm_jax.data.tokenizer_hf import train_byte_level_bpe

    config = config_lib.parse(gin_params=DATA).data
    _, raw, _ = corpus_and_tokenizer(config)
    texts = [t for t, _ in iter_texts(raw.splits["train"], config.text_key) if t]
    train_byte_level_bpe(texts, vocab_size, directory)
    return directory


def question(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(100), rng.randrange(100)
    return f"# Q: what is {a} + {b}?\n", f"# A: {a + b}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--delta_steps", type=int, default=200)
    parser.add_argument("--alphas", default="0.5,1,2")
    parser.add_argument("--bpe_vocab", type=int, default=1024)
    args = parser.parse_args()
    root = Path(args.root)
    template, user, delta = root / "template", root / "user_64", root / "delta"
    user_bpe = root / "user_64_bpe"
    steps = [f"TrainConfig.num_steps = {args.steps}"]
    larger = ["ModelConfig.d_model = 64", "ModelConfig.n_layers = 3", "ModelConfig.ffn_dim = 192"]
    if not (template / "metrics.jsonl").exists():
        tinylm(
            "train", f"--workdir={template}", "--gin_file=models/tiny_test.gin", *gin(DATA + steps)
        )
    if not (user / "metrics.jsonl").exists():
        tinylm(
            "train",
            f"--workdir={user}",
            "--gin_file=models/tiny_test.gin",
            *gin(
                DATA + steps + larger + [f"DataConfig.tokenizer = '{template / 'tokenizer.model'}'"]
            ),
        )
    if not (user_bpe / "metrics.jsonl").exists():
        bpe = train_bpe(root / "bpe", args.bpe_vocab)
        tinylm(
            "train",
            f"--workdir={user_bpe}",
            "--gin_file=models/tiny_test.gin",
            *gin(
                DATA
                + steps
                + larger
                + [
                    f"DataConfig.tokenizer = '{bpe / 'tokenizer.json'}'",
                    f"ModelConfig.vocab_size = {args.bpe_vocab}",
                ]
            ),
        )
    rng = random.Random(0)
    records = [dict(zip(("prompt", "response"), question(rng), strict=True)) for _ in range(400)]
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    if not (delta / "metrics.jsonl").exists():
        tinylm(
            "cmc",
            "train",
            f"--template={template}",
            f"--workdir={delta}",
            f"--data={root / 'train.jsonl'}",
            *gin(
                [
                    "ModelConfig.d_model = 16",
                    "ModelConfig.n_layers = 1",
                    "ModelConfig.n_heads = 2",
                    "ModelConfig.ffn_dim = 48",
                    f"TrainConfig.num_steps = {args.delta_steps}",
                    "TrainConfig.log_every = 50",
                    "OptimizerConfig.learning_rate = 3e-3",
                ]
            ),
        )
    prompts = [question(random.Random(10_000 + i))[0] for i in range(100)]
    rows = []
    for model in (template, user, user_bpe):
        for alpha in [None, *map(float, args.alphas.split(","))]:
            extra = [] if alpha is None else [f"--delta={delta}", f"--alpha={alpha}"]
            out = tinylm(
                "sample",
                f"--workdir={model}",
                "--json",
                "--max_new_tokens=12",
                "--temperature=0.7",
                *[f"--prompt={p}" for p in prompts],
                *extra,
            )
            completions = [
                json.loads(line)["completion"] for line in out.splitlines() if line.startswith("{")
            ]
            rate = sum(bool(SHAPE.match(c.split("\n")[0])) for c in completions) / len(completions)
            bpb = json.loads(
                tinylm("eval", f"--workdir={model}", "--eval_steps=8", *extra).splitlines()[-1]
            )["eval_bits_per_byte"]
            rows.append((model.name, "-" if alpha is None else alpha, rate, bpb))
            print(rows[-1], flush=True)
    for entry in sorted((delta / "token_maps").glob("*.json")):  # built by the BPE model's runs
        print("token map", entry.name, json.dumps(json.loads(entry.read_text())["report"]))
    print("| model | alpha | `# A: <n>` rate | held-out bits/byte |\n|---|---|---|---|")
    for name, alpha, rate, bpb in rows:
        print(f"| {name} | {alpha} | {rate:.2f} | {bpb:.3f} |")


if __name__ == "__main__":
    main()
