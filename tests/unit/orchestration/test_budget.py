"""Budgeted sweeps: the ER-UCB allocator on synthetic arms, ZOOpt on synthetic objectives, sweep
state and resume with an injected trainer."""

import json
import math

import ml_collections
import numpy as np
import pytest

from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import bandit as sweep_bandit
from tinylm_jax.orchestration import budget as sweep_budget
from tinylm_jax.orchestration import grid as sweep
from tinylm_jax.orchestration import search as sweep_search
from tinylm_jax.orchestration import sweep_state


def draw(rng: np.random.Generator, kind: str) -> float:
    """Rewards (higher is better) of synthetic arms with known distributions."""
    if kind == "steady":  # the best mean, a low ceiling
        return rng.normal(0.5, 0.01)
    if kind == "heavy_tail":  # mean 0.475 but the highest values
        return rng.normal(0.85, 0.02) if rng.random() < 0.5 else rng.normal(0.1, 0.02)
    if kind == "good":
        return rng.normal(0.7, 0.02)
    return rng.normal(0.2, 0.02)  # "bad"


def allocate(kinds: list[str], pulls: int, seed: int, config: sweep_bandit.ErUcbConfig):
    rng, rewards = np.random.default_rng(seed), [[] for _ in kinds]
    for _ in range(pulls):
        arm = sweep_bandit.choose(rewards, [len(r) for r in rewards], [True] * len(kinds), config)
        rewards[arm].append(draw(rng, kinds[arm]))
    return rewards


def test_er_ucb_favours_the_best_arm_and_the_best_extreme_over_the_best_mean():
    config = sweep_bandit.ErUcbConfig(init_pulls=3)
    for seed in range(10):
        rewards = allocate(["bad", "good", "steady"], 100, seed, config)
        assert len(rewards[1]) > 80
    wins = 0
    for seed in range(20):
        steady, tail, bad = allocate(["steady", "heavy_tail", "bad"], 100, seed, config)
        assert len(steady) + len(tail) + len(bad) == 100
        assert min(len(steady), len(tail), len(bad)) >= 3  # the round robin comes first
        wins += len(tail) > 50
    # The heavy-tailed arm has the worse mean (0.475 vs 0.5); it loses only when its three
    # round-robin draws all come from the low mode (probability 1/8).
    assert wins >= 15


def test_er_ucb_index_follows_the_formula():
    config = sweep_bandit.ErUcbConfig()
    rewards = [[1.0, 3.0], [2.0]]
    (a, b) = sweep_bandit.indices(rewards, [2, 2], config)
    scaled, explore = [0.0, 1.0], math.sqrt(2 * math.log(4) / 2)
    centred = [r - 0.6 for r in scaled]
    expected = (
        20 * sum(centred) / 2
        + math.sqrt(sum(c * c for c in centred) / 2 / 0.01)
        + explore
        + math.sqrt(explore / 0.01)
    )
    assert a == pytest.approx(expected)
    assert b == pytest.approx(
        20 * -0.1 + math.sqrt(0.01 / 0.01) + explore + math.sqrt(explore / 0.01)
    )
    assert sweep_bandit.indices([[], [1.0]], [0, 2], config)[0] == math.inf
    assert sweep_bandit.choose(rewards, [2, 2], [False, False], config) is None


def test_zoopt_search_finds_the_minimum_of_synthetic_objectives():
    dims = sweep_search.parse_search(
        {"OptimizerConfig": {"learning_rate": {"log_uniform": [1e-4, 3e-2]}, "b1": [0.8, 0.99]}}
    )
    assert [d.binding for d in dims] == ["OptimizerConfig.b1", "OptimizerConfig.learning_rate"]

    def objective(values):  # minimum 0 at b1 = 0.9, learning_rate = 3e-3
        log_lr = math.log10(values["OptimizerConfig.learning_rate"] / 3e-3)
        return log_lr**2 + ((values["OptimizerConfig.b1"] - 0.9) / 0.19) ** 2

    for seed in range(3):
        searcher, best = sweep_search.Searcher(len(dims), 60, seed), (math.inf, None)
        for _ in range(60):
            point = searcher.ask()
            values = sweep_search.values(dims, point)
            best = min(best, (objective(values), values), key=lambda b: b[0])
            searcher.tell(point, objective(values))
        assert best[0] < 0.01, best
        assert best[1]["OptimizerConfig.learning_rate"] == pytest.approx(3e-3, rel=0.3)


def test_search_spaces_and_budgets_are_checked():
    with pytest.raises(ConfigError, match="low < high"):
        sweep_search.parse_search({"OptimizerConfig": {"b1": [0.9, 0.8]}})
    with pytest.raises(ConfigError, match="log-uniform"):
        sweep_search.parse_search({"OptimizerConfig": {"learning_rate": {"log_uniform": [0, 1]}}})
    with pytest.raises(ConfigError, match="one of"):
        sweep_search.parse_search({"OptimizerConfig": {"b1": {"normal": [0, 1]}}})
    (choice,) = sweep_search.parse_search({"OptimizerConfig": {"schedule": {"choice": ["a", "b"]}}})
    assert [choice.value(u) for u in (0.0, 0.49, 0.5, 1.0)] == ["a", "a", "b", "b"]
    with pytest.raises(ConfigError, match="rung_steps <= budget"):
        sweep_budget.parse_budgeted(spec_dict(budget=4, rung_steps=8))
    with pytest.raises(ConfigError, match="needs a `search`"):
        sweep_budget.parse_budgeted(spec_dict(search={}))


ARM_OFFSETS = {"small": 2.0, "medium": 1.6, "large": 1.8}


def spec_dict(**changes) -> ml_collections.ConfigDict:
    spec = {
        "name": "synthetic",
        "gin_files": ["models/tiny_test.gin"],
        "arms": [{"name": a, "params": {"ModelConfig": {"d_model": 8}}} for a in ARM_OFFSETS],
        "strategy": "er_ucb",
        "budget": 40,
        "rung_steps": 4,
        "search": {"OptimizerConfig": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}}},
        "seed": 1,
    }
    return ml_collections.ConfigDict({**spec, **changes})


def synthetic_bits(trial: sweep_state.Trial) -> float:
    lr = trial.values["OptimizerConfig.learning_rate"]
    return ARM_OFFSETS[trial.arm] + 0.1 * math.log10(lr / 3e-3) ** 2


class Killed(Exception):
    """The sweep process dying in the middle of a trial."""


def fake_runner(calls: list, kill_at: int | None = None):
    def runner(trials):
        calls.append([t.id for t in trials])
        if kill_at is not None and any(t.id == kill_at for t in trials):
            raise Killed
        return [synthetic_bits(t) for t in trials]

    return runner


def synthetic_sweep(root, runner, width=1, **changes):
    spec = spec_dict(**changes)
    plan = sweep_budget.parse_budgeted(spec)
    arms = sweep.expand(spec)
    return sweep_budget.run(root, spec.name, arms, plan, runner, width, log=lambda line: None)


def test_budget_accounting_is_exact(tmp_path):
    for width in (1, 3):
        calls = []
        state = synthetic_sweep(tmp_path / f"w{width}", fake_runner(calls), width, budget=43)
        assert state.spent == state.committed == 40  # 10 rungs of 4 fit in 43 steps
        assert len(state.trials) == 10 and all(t.status == "done" for t in state.trials)
        assert sum(len(c) for c in calls) == 10 and max(len(c) for c in calls) == width
        report = sweep_budget.report(tmp_path / f"w{width}", state)
        assert sum(a["steps"] for a in report["arms"]) == 40
        # The best arm (lowest bits per byte at its best learning rate) gets the most budget.
        assert max(report["arms"], key=lambda a: a["steps"])["arm"] == "medium"
    first = state.trials[0]
    assert first.workdir == "small/t000" and first.gin_params[-2:] == (
        "TrainConfig.num_steps = 4",
        f"OptimizerConfig.learning_rate = {first.values['OptimizerConfig.learning_rate']!r}",
    )
    # Raising the budget continues the finished sweep; lowering it below what was spent fails.
    state = synthetic_sweep(tmp_path / "w1", fake_runner([]), budget=48)
    assert state.spent == 48 and len(state.trials) == 12
    with pytest.raises(ConfigError, match="below"):
        synthetic_sweep(tmp_path / "w1", fake_runner([]), budget=20)


@pytest.mark.parametrize("width", [1, 2])
def test_killed_sweep_resumes_and_ends_like_an_uninterrupted_one(tmp_path, width):
    synthetic_sweep(tmp_path / "whole", fake_runner([]), width)
    whole = (tmp_path / "whole" / sweep_state.STATE_FILE).read_text()

    first = []
    with pytest.raises(Killed):
        synthetic_sweep(tmp_path / "cut", fake_runner(first, kill_at=5), width)
    saved = json.loads((tmp_path / "cut" / sweep_state.STATE_FILE).read_text())
    assert [t["status"] for t in saved["trials"] if t["id"] < 4] == ["done"] * 4
    killed = next(t for t in saved["trials"] if t["id"] == 5)
    assert killed["status"] == "running"

    second = []
    synthetic_sweep(tmp_path / "cut", fake_runner(second), width)
    assert 5 in second[0]  # the unfinished wave runs first (each trial resumes its workdir)
    done_before = {i for wave in first[:-1] for i in wave}
    assert not done_before & {i for wave in second for i in wave}  # nothing trained twice
    assert (tmp_path / "cut" / sweep_state.STATE_FILE).read_text() == whole


def test_failed_trials_spend_budget_and_lose_ground(tmp_path):
    def runner(trials):  # the "small" arm diverges at every learning rate
        return [None if t.arm == "small" else synthetic_bits(t) for t in trials]

    state = synthetic_sweep(tmp_path, runner)
    small = [t for t in state.trials if t.arm == "small"]
    assert small and all(t.status == "failed" and t.bits_per_byte is None for t in small)
    assert state.spent == 40 and len(small) == 2  # only its round-robin pulls
    assert "failed" in sweep_budget.progress_line(state, small[0])


def test_state_of_another_sweep_is_refused(tmp_path):
    synthetic_sweep(tmp_path, fake_runner([]), budget=8)
    with pytest.raises(ConfigError, match="belongs to another sweep"):
        synthetic_sweep(tmp_path, fake_runner([]), budget=8, seed=2)
