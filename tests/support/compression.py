"""The corpus and the texts of the tokenizer-compression tests."""

from tests.helpers import TINY_DATA

BIG = 1500
UNSEEN = [
    "naïve café — 東京 🙂 Ωμέγα 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "  два  пробела\t\ttabs\r\n\x00 end ",
    "Ünïcödé ∮ E⋅da = Q, n → ∞, ∑ f(i) = ∏ g(i) 🐍🐍",
]
# The tiny stdlib corpus of tests/helpers.py, with a big tokenizer of BIG pieces.
DATA = TINY_DATA + [f"DataConfig.vocab_size = {BIG}"]
DATA_CONFIG = dict(
    dataset="python_stdlib", max_documents=60, validation_fraction=0.05, vocab_size=BIG
)
