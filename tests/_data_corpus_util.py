"""Helpers for the data tests: tiny deterministic corpora written to tmp dirs."""

from __future__ import annotations

import json
import pathlib
import random

WORDS = (
    "the quick brown fox jumps over lazy dog naïve café — 東京 🙂 def return class "
    "import lambda yield 0 1 2 3 42 1999 x y z alpha beta gamma"
).split()


def make_text(rng: random.Random, n_lines: int) -> str:
    lines = []
    for _ in range(n_lines):
        indent = "    " * rng.randint(0, 2)
        lines.append(indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))))
    return "\n".join(lines) + "\n"


def write_corpus(
    root: pathlib.Path, n_txt: int = 30, n_jsonl: int = 30, seed: int = 0
) -> list[str]:
    """Writes `n_txt` .txt documents and one .jsonl with `n_jsonl` documents."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n_txt):
        text = make_text(rng, rng.randint(3, 40))
        (root / f"doc{i:03d}.txt").write_text(text, encoding="utf-8")
        texts.append(text)
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for _ in range(n_jsonl):
            text = make_text(rng, rng.randint(3, 40))
            f.write(json.dumps({"text": text, "meta": 1}) + "\n")
            texts.append(text)
    return texts
