"""TinyHelen's curriculum (arXiv 2501.00522) as selection rules: stage sizes, the easiest
units, the early-stopping check, and its settings."""

import numpy as np
import pytest

from tinylm_jax.config.rounds import RoundsConfig
from tinylm_jax.data import selection
from tinylm_jax.errors import ConfigError


def test_stages_grow_by_five_percent_from_the_easiest_five():
    difficulty = np.random.default_rng(0).permutation(203).astype(float)
    fractions = [selection.stage_fraction(k, 0.05, 0.05) for k in range(1, 22)]
    assert fractions[:3] == [0.05, 0.1, 0.15] and fractions[19:] == [1.0, 1.0]
    first = selection.easiest_units(difficulty, fractions[0])
    assert abs(len(first) - 0.05 * 203) <= 1  # 10 units: int(0.05 * 203), as TinyHelen's code
    assert set(first) == set(np.argsort(difficulty)[: len(first)])
    previous = first
    for fraction in fractions[1:]:
        units = selection.easiest_units(difficulty, fraction)
        assert set(previous) <= set(units)  # a stage keeps every easier unit
        previous = units
    assert len(previous) == 203


def test_plateau_ends_a_stage_after_patience_evals_without_enough_improvement():
    state, ends = selection.plateau_update({}, 3.0, patience=2, min_delta=0.1)
    assert state == {"best": 3.0, "bad": 0} and not ends
    state, ends = selection.plateau_update(state, 2.95, patience=2, min_delta=0.1)  # < delta
    assert state == {"best": 3.0, "bad": 1} and not ends
    state, ends = selection.plateau_update(state, 2.5, patience=2, min_delta=0.1)  # improves
    assert state == {"best": 2.5, "bad": 0} and not ends
    state, _ = selection.plateau_update(state, 2.6, patience=2, min_delta=0.1)
    state, ends = selection.plateau_update(state, 2.45, patience=2, min_delta=0.1)
    assert ends and state == {"best": 2.5, "bad": 0}  # the best carries into the next stage


def test_length_difficulty_is_the_mean_document_piece_length():
    segments = np.array([[1, 1, 1, 1], [1, 2, 2, 2], [1, 1, 0, 0]])
    np.testing.assert_allclose(selection.record_lengths(segments), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(selection.unit_means(np.array([4.0, 2.0, 2.0]), "batch", 2), [3, 2])


def test_tinyhelen_settings_are_checked_and_easiest_first_is_gone():
    with pytest.raises(ConfigError, match="reverse of TinyHelen"):
        RoundsConfig(selection="easiest_first")
    with pytest.raises(ConfigError, match="needs `reference`"):
        RoundsConfig(selection="tinyhelen", difficulty="reference_loss")
    with pytest.raises(ConfigError, match="needs round_steps"):
        RoundsConfig(selection="tinyhelen", advance="steps")
    with pytest.raises(ConfigError, match="leave num_rounds at 1"):
        RoundsConfig(selection="tinyhelen", num_rounds=2)
    config = RoundsConfig(selection="tinyhelen", advance="steps", round_steps=3)
    assert config.num_stages == 20
    assert config.steps_per_round(10) == (3, 3, 3, 1)
    assert sum(config.steps_per_round(100)) == 100 and len(config.steps_per_round(100)) == 20
    assert RoundsConfig(selection="tinyhelen").steps_per_round(10) == (10,)
