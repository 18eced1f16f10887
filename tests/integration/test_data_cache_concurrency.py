"""Caches that concurrent runs share: N processes on one cold cache all succeed, one cache."""

import json
import os
import random

import pytest

from tests.helpers import concurrent_digests

# Each process builds the whole chain: TFDS corpus, tokenizer, packed records, token counts.
SCRIPT = """
import hashlib, pathlib, sys
from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.data import corpus, pipeline
from tinylm_jax.recipes.pangu.token_counts import cached_counts

config = DataConfig(dataset="text_files", paths=(sys.argv[1],), vocab_size=300,
                    validation_fraction=0.1, num_workers=1)
data = pipeline.prepare_data(config, seq_len=32)
h = hashlib.sha256()
for split in (data.train, data.validation):
    for i in range(len(split)):
        h.update(split[i]["tokens"].tobytes() + split[i]["segment_ids"].tobytes())
raw = corpus.load_raw_corpus(config, resolve_data_dir(config))
counts = cached_counts(data.tokenizer, raw, resolve_data_dir(config), 1)
h.update(counts.counts.tobytes())
print("DIGEST", len(data.train), h.hexdigest())
"""


def _corpus(path, n_docs=300):
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "pack", "token", "cache", "lock", "river", "stone"]
    with open(path, "w") as f:
        for i in range(n_docs):
            text = " ".join(rng.choice(words) + str(rng.randrange(20)) for _ in range(40))
            f.write(json.dumps({"text": f"doc {i}: {text}"}) + "\n")


@pytest.mark.slow
def test_five_processes_on_a_cold_cache_all_succeed_and_share_one_cache(tmp_path):
    corpus_file = tmp_path / "docs.jsonl"
    _corpus(corpus_file)
    cache = tmp_path / "cache"
    env = {**os.environ, "TINYLM_DATA_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    digests = concurrent_digests(SCRIPT, [str(corpus_file)], 5, env, timeout=600)
    assert len(digests) == 1, digests  # every process read the same records and counts
    # One entry per stage, and no temp or incomplete leftovers anywhere in the cache.
    entries = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert not [e for e in entries if "tmp" in e or "incomplete" in e], entries
    assert len(list((cache / "tokenizers").glob("*.model"))) == 1
    assert len([p for p in (cache / "packed").iterdir() if p.is_dir()]) == 1
    assert len(list((cache / "token_counts").glob("*.npz"))) == 1
    versions = [p for p in (cache / "tfds").rglob("1.0.0") if p.is_dir()]
    assert len(versions) == 1, entries
