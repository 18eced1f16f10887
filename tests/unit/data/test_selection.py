"""Multi-round training (PanGu-π Pro, arXiv 2402.02791): the sampler against exact
without-replacement probabilities, partitions and selection rules, config errors, the loader
restricted to ids, `tinylm score`, and kill-and-resume during scoring, saving and round 2 (one
process; and in round 2 with 2 processes x 4 devices)."""

import itertools

import numpy as np
import pytest
from scipy import stats

from tests.helpers import tiny_run
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.rounds import RoundsConfig
from tinylm_jax.data import selection as rounds
from tinylm_jax.errors import ConfigError


def exact_subset_probabilities(logits: np.ndarray, k: int) -> dict[tuple, float]:
    """P(subset) of k successive draws without replacement from softmax(logits), by
    enumerating every ordered draw."""
    weights = np.exp(logits - logits.max())
    out: dict[tuple, float] = {}
    for order in itertools.permutations(range(len(logits)), k):
        p, left = 1.0, weights.sum()
        for i in order:
            p *= weights[i] / left
            left -= weights[i]
        key = tuple(sorted(order))
        out[key] = out.get(key, 0.0) + p
    return out


def test_gumbel_top_k_draws_subsets_with_the_exact_without_replacement_probabilities():
    losses = np.array([0.5, 1.0, 2.0, 2.5, 4.0])
    temperature, k, trials = 0.8, 2, 20000
    exact = exact_subset_probabilities(losses / temperature, k)
    counts = dict.fromkeys(exact, 0)
    inclusion = np.zeros(len(losses))
    for seed in range(trials):
        picked = rounds.select_units(
            losses,
            selection="softmax_loss",
            sampling_rate=k / len(losses),
            temperature=temperature,
            partitions=1,
            seed=seed,
            round_index=2,
        )
        assert len(set(picked.tolist())) == k
        counts[tuple(picked.tolist())] += 1
        inclusion[picked] += 1
    observed = np.array([counts[s] for s in exact])
    expected = np.array([exact[s] for s in exact]) * trials
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    exact_inclusion = [sum(p for s, p in exact.items() if i in s) for i in range(len(losses))]
    np.testing.assert_allclose(inclusion / trials, exact_inclusion, atol=0.015)
    # Not uniform: the hardest unit is drawn far more often than the easiest.
    assert inclusion[4] > 5 * inclusion[0]


@pytest.mark.parametrize("selection", ["softmax_loss", "uniform"])
def test_selection_sizes_per_partition_are_exact_and_ids_never_repeat(selection):
    losses = np.random.default_rng(0).normal(3.0, 1.0, size=103)
    bounds = rounds.partition_bounds(103, 4)
    assert bounds.tolist() == [0, 26, 52, 78, 103]
    for round_index in (2, 3):
        picked = rounds.select_units(
            losses,
            selection=selection,
            sampling_rate=0.3,
            temperature=1.0,
            partitions=4,
            seed=7,
            round_index=round_index,
        )
        fraction = 0.3
        assert len(np.unique(picked)) == len(picked)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            inside = picked[(picked >= start) & (picked < stop)]
            assert len(inside) == rounds.selected_count(stop - start, fraction)
    again = rounds.select_units(
        losses,
        selection=selection,
        sampling_rate=0.3,
        temperature=1.0,
        partitions=4,
        seed=7,
        round_index=3,
    )
    np.testing.assert_array_equal(picked, again)  # the same seed draws the same ids


def test_batch_units_group_consecutive_records():
    nll = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    tokens = np.array([1, 1, 2, 2, 5])
    losses, unit_tokens = rounds.unit_losses(nll, tokens, "batch", batch_size=2)
    np.testing.assert_allclose(losses, [3.0, 14.0 / 4, 2.0])
    assert unit_tokens.tolist() == [2, 4, 5] and rounds.unit_count(5, "batch", 2) == 3
    ids = rounds.unit_record_ids(np.array([2, 0]), "batch", batch_size=2, num_records=5)
    assert ids.tolist() == [0, 1, 4]


def test_round_schedule():
    steps = RoundsConfig(num_rounds=3, round_steps=[2, 3, 5]).steps_per_round(10)
    assert steps == (2, 3, 5)
    assert [rounds.round_at(s, steps) for s in range(11)] == [1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    assert RoundsConfig(num_rounds=2).steps_per_round(8) == (4, 4)
    assert RoundsConfig(num_rounds=2, round_steps=4).steps_per_round(8) == (4, 4)


@pytest.mark.parametrize(
    "params, message",
    [
        (["RoundsConfig.sampling_rate = 0.0"], r"sampling_rate must lie in \(0, 1\]"),
        (["RoundsConfig.sampling_rate = 1.5"], r"sampling_rate must lie in \(0, 1\]"),
        (["RoundsConfig.num_rounds = 2", "RoundsConfig.round_steps = [3, 3]"], "adding up to"),
        (["RoundsConfig.num_rounds = 3"], "does not split evenly"),
        (["RoundsConfig.selection = 'hardest'"], "selection must be one of"),
    ],
)
def test_bad_round_settings_are_config_errors(params, message, gin_clean):
    with pytest.raises(ConfigError, match=message):
        config_lib.parse(["models/tiny_test.gin"], tiny_run(steps=4) + params)
