"""`--delta` with a delta of another tokenizer, end to end: `eval` and `sample` build the
PM-MinED map once, cache it in the delta's workdir under both fingerprints and reuse it; runs
that start together on a cold cache all get the one map."""

import json
import os
from pathlib import Path

import pytest

from tests.helpers import concurrent_digests
from tests.support.cmc import cross_tokenizers, write_model
from tinylm_jax import layout
from tinylm_jax.cli import main as cli
from tinylm_jax.data.token_map import build_map, read_map
from tinylm_jax.data.tokenizer import load_tokenizer

TASK = [
    {"context": "def f(x):\n    return", "choices": [" x", " None"], "answer": 0},
    {"context": "import", "choices": [" re", " 12"], "answer": 0},
]


@pytest.mark.slow
def test_eval_and_sample_across_vocabularies_build_the_map_once_and_reuse_it(tmp_path, capsys):
    sentencepiece, bpe = cross_tokenizers(tmp_path / "tokenizers")
    user = write_model(tmp_path / "user", sentencepiece)
    delta = write_model(tmp_path / "delta", bpe, ["ModelConfig.d_model = 16"], seed=1)
    task = tmp_path / "task.jsonl"
    task.write_text("".join(json.dumps(t) + "\n" for t in TASK))
    flags = [f"--workdir={user}", f"--delta={delta}"]
    assert cli.main(["eval", *flags, "--eval_steps=0", f"--task={task}"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tasks"]["task"]["n"] == 2
    user_tok, delta_tok = load_tokenizer(sentencepiece), load_tokenizer(bpe)
    entry = Path(layout.token_map_file(delta, user_tok.fingerprint, delta_tok.fingerprint))
    cached = read_map(entry, user_tok, delta_tok)
    assert cached.to_json() == build_map(user_tok, delta_tok).to_json()
    built_at = entry.stat().st_mtime_ns
    greedy = ["--prompt=def f(x):", "--max_new_tokens=6", "--temperature=0", "--json"]
    assert cli.main(["sample", f"--workdir={user}", *greedy]) == 0
    alone = json.loads(capsys.readouterr().out.splitlines()[-1])
    # 'base' at alpha 0 adds log_softmax's per-position constant only: greedy text unchanged.
    assert cli.main(["sample", *flags, "--alpha=0", *greedy]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == alone
    assert cli.main(["sample", *flags, *greedy]) == 0
    assert entry.stat().st_mtime_ns == built_at  # reused, not rebuilt
    assert [p.name for p in entry.parent.iterdir() if not p.name.endswith(".lock")] == [entry.name]


BUILD = """
import hashlib, sys
from tinylm_jax.data.token_map import cached_map
from tinylm_jax.data.tokenizer import load_tokenizer
token_map = cached_map(sys.argv[3], load_tokenizer(sys.argv[1]), load_tokenizer(sys.argv[2]))
print("DIGEST", hashlib.sha256(token_map.to_json().encode()).hexdigest())
"""


@pytest.mark.slow
def test_runs_starting_together_on_a_cold_map_cache_share_one_map(tmp_path):
    sentencepiece, bpe = cross_tokenizers(tmp_path / "tokenizers")
    entry = tmp_path / "delta" / "token_maps" / "user-delta.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [str(sentencepiece), str(bpe), str(entry)]
    digests = concurrent_digests(BUILD, args, 3, env, timeout=300)
    assert len(digests) == 1
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name, entry.name + ".lock"]
