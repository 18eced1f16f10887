"""Texts that stress a tokenizer: other scripts, emoji, control bytes, runs of spaces."""

UNICODE = [
    "naïve café — 東京 🙂 Ωμέγα 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "def f(x):\n\treturn  x  # two  spaces\n\n\n",
    "  \x00 \r\n tabs\t\t<|endoftext|> 日本語のテキスト 😀🐍 ",
]
