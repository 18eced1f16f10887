"""Hugging Face side of the interop tests: offline transformers and torch (skipped where they
are not installed), and texts whose tokenization must agree."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "def main(argv):\n    return len(argv)  # ok\n",
    "  leading and trailing spaces  ",
    "naïve café — 日本語のテキスト 😀 ∑",
    "<s> literal control pieces </s>",
]
