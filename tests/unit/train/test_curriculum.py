"""TinyHelen's reference difficulty: a `tinylm score` file read back, and the errors a user
can cause with it (wrong file, another split)."""

import numpy as np
import pytest

from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.score import Scores, write_scores
from tinylm_jax.train.curriculum import read_reference


def test_reference_scores_read_back_and_mismatches_name_the_fix(tmp_path):
    path = tmp_path / "scores.jsonl"
    nll, tokens = np.array([6.0, 3.0, 8.0]), np.array([3, 3, 4])
    write_scores(path, Scores(nll_N=nll, tokens_N=tokens, seconds=1.0))
    got_nll, got_tokens = read_reference(str(path), 3)
    np.testing.assert_allclose(got_nll, nll)
    np.testing.assert_array_equal(got_tokens, tokens)
    with pytest.raises(ConfigError, match="scores 3 records, this run's training split has 4"):
        read_reference(str(path), 4)
    with pytest.raises(ConfigError, match="is not a scores file; write it with `tinylm score"):
        read_reference(str(tmp_path / "missing.jsonl"), 3)
