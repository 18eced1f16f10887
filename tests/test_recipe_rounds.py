"""Multi-round training (PanGu-π Pro, arXiv 2402.02791): the sampler against exact
without-replacement probabilities, partitions and selection rules, config errors, the loader
restricted to ids, `tinylm score`, and kill-and-resume during scoring, saving and round 2 (one
process; and in round 2 with 2 processes x 4 devices)."""

import itertools
import json
import signal
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from scipy import stats

from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.rounds import RoundsConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data import selection as rounds
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.errors import ConfigError
from tinylm_jax.train import loop

from .helpers import read_metrics, tiny_run, train_losses
from .test_multiprocess_resume import params_at, steps_saved, train_once, train_two_processes


def small_run() -> list[str]:
    """4 steps on the first 12 stdlib modules (the data every run in this file shares)."""
    return tiny_run(4) + ["DataConfig.max_documents = 12"]


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


@pytest.mark.parametrize("selection", ["softmax_loss", "uniform", "easiest_first"])
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
        fraction = rounds.selection_fraction(selection, 0.3, round_index)
        assert len(np.unique(picked)) == len(picked)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            inside = picked[(picked >= start) & (picked < stop)]
            assert len(inside) == rounds.selected_count(stop - start, fraction)
        if selection == "easiest_first":  # the lowest losses of each part, growing by r a round
            part = losses[:26]
            assert set(picked[picked < 26]) == set(np.argsort(part)[: len(picked[picked < 26])])
            assert fraction == pytest.approx(0.3 * (round_index - 1))
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


def test_the_cli_exits_2_on_bad_rounds_before_training(tmp_path, capsys, gin_clean):
    flags = [f"--gin_param={p}" for p in tiny_run(4) + ["RoundsConfig.sampling_rate = 2.0"]]
    assert cli.main(["train", f"--workdir={tmp_path}", *flags]) == 2
    assert "RoundsConfig.sampling_rate" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_more_partitions_than_units_fail_before_the_first_step(tmp_path, data_dir, gin_clean):
    config = config_lib.parse(
        ["models/tiny_test.gin"],
        small_run() + ["RoundsConfig.num_rounds = 2", "RoundsConfig.partitions = 1000000000"],
    )
    with pytest.raises(ConfigError, match=r"partitions=1000000000 must lie in \[1, "):
        loop.train(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_the_loader_restricted_to_ids_yields_each_exactly_once_per_epoch(data_dir, gin_clean):
    config = config_lib.parse(["models/tiny_test.gin"], small_run())
    data = pipeline.prepare_data(config.data, config.train.seq_len)
    ids = np.sort(np.random.default_rng(1).choice(len(data.train), 37, replace=False))
    for shards in (1, 2):
        epochs = [[] for _ in range(3)]
        for shard in range(shards):
            it = pipeline.make_train_iterator(
                data, 1, seed=3, shard_index=shard, shard_count=shards, sequence_ids=ids
            )
            per_epoch = len(ids[shard::shards])
            for epoch in epochs:
                epoch.extend(int(next(it)["ids"][0]) for _ in range(per_epoch))
        for epoch in epochs:
            assert sorted(epoch) == ids.tolist(), shards
        assert epochs[0] != epochs[1]  # reshuffled every epoch


def test_batch_units_select_whole_groups_of_records(tmp_path, data_dir, gin_clean):
    config = config_lib.parse(
        ["models/tiny_test.gin"],
        small_run()
        + [
            "TrainConfig.eval_steps = 0",
            "RoundsConfig.num_rounds = 2",
            "RoundsConfig.unit = 'batch'",
            "RoundsConfig.score_batch_size = 64",
        ],
    )
    loop.train(config, tmp_path)
    metadata = json.loads(
        (ckpt.checkpoint_dir(tmp_path) / "4" / "metadata" / "metadata").read_text()
    )
    summary = metadata["rounds"]["history"][-1]
    assert metadata["rounds"]["round"] == 2 and summary["steps"] == 2
    groups, sizes = np.unique(selected_ids(tmp_path, 4) // 8, return_counts=True)
    units = summary["units_scored"]
    assert len(groups) == summary["units_selected"] == rounds.selected_count(units, 0.5)
    assert set(sizes[groups < units - 1]) == {8}  # only the last group may be short


# --- Real runs: kill and resume (subprocesses, as in test_multiprocess_resume) -------------

ROUND_FLAGS = [
    f"--gin_param={p}"
    for p in [
        "TrainConfig.num_steps = 8",
        "DataConfig.max_documents = 12",
        "RoundsConfig.num_rounds = 2",
        "RoundsConfig.partitions = 2",
        "RoundsConfig.score_batch_size = 64",
        # Losses of an untrained model differ by hundredths of a nat: a low τ makes the
        # preference for hard units plain to see.
        "RoundsConfig.temperature = 0.01",
    ]
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir, cache) -> Path:
    """An uninterrupted 2-round run, 1 process x 8 devices."""
    workdir = tmp_path_factory.mktemp("rounds_reference") / "run"
    code, out = train_once(workdir, cache, extra=ROUND_FLAGS)
    assert code == 0, out[-3000:]
    assert "round 1/2: steps 1-4 on all" in out and "round 2/2: steps 5-8 on" in out, out
    return workdir


def selected_ids(workdir: Path, step: int) -> np.ndarray:
    item = ocp.StandardCheckpointer().restore(ckpt.checkpoint_dir(workdir) / str(step) / "rounds")
    return np.asarray(item["selected_ids"])


def selection_summary(workdir: Path) -> list[dict]:
    """The scoring records of metrics.jsonl without their timings."""
    timing = ("score_seconds", "score_tokens_per_second")
    records = [r for r in read_metrics(workdir) if "units_selected" in r]
    return [{k: v for k, v in r.items() if k not in timing} for r in records]


def test_reference_records_rounds_and_score_matches_eval(reference, capsys, gin_clean):
    records = read_metrics(reference)
    assert all("round" in r for r in records)
    assert {r["step"]: r["round"] for r in records if "loss" in r} == {
        s: 1 if s <= 4 else 2 for s in range(1, 9)
    }
    (scoring,) = [r for r in records if "units_selected" in r]
    assert scoring["step"] == 4 and scoring["round"] == 2
    assert scoring["units_selected"] == len(selected_ids(reference, 8))
    assert scoring["score_loss_mean_selected"] > scoring["score_loss_mean_all"]
    assert scoring["score_tokens_per_second"] > 0
    # `tinylm score` on the validation split agrees with `tinylm eval` on it.
    out = reference.parent / "validation_scores.jsonl"
    assert cli.main(["score", f"--workdir={reference}", "--split=validation", f"--out={out}"]) == 0
    assert cli.main(["eval", f"--workdir={reference}"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    summary, evaluated = json.loads(printed[-2]), json.loads(printed[-1])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(rows))) == list(range(summary["records"]))
    tokens = sum(r["tokens"] for r in rows)
    mean = sum(r["loss"] * r["tokens"] for r in rows) / tokens
    assert tokens == evaluated["eval_tokens"]
    assert mean == pytest.approx(evaluated["eval_loss"], rel=1e-5)


def test_killed_while_scoring_saving_and_in_round_2_resumes_bit_exactly(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    code, out = train_once(workdir, cache, fault="KILL@3:score", extra=ROUND_FLAGS)
    assert code == -signal.SIGKILL and "round 2/2" not in out, out[-3000:]
    assert 4 not in steps_saved(workdir)  # the round-2 start (step 4) is saved after scoring

    # Killed while round 2's first checkpoint (step 4, async) is being written ...
    code, out = train_once(workdir, cache, fault="KILL@4:save", extra=ROUND_FLAGS)
    assert code == -signal.SIGKILL and "round 1 done at step 4" in out, out[-3000:]

    # ... then in round 2.
    code, out = train_once(workdir, cache, fault="KILL@7", extra=ROUND_FLAGS)
    assert code == -signal.SIGKILL and "round 2/2: steps 5-8" in out, out[-3000:]
    resumed_at = steps_saved(workdir)[-1]
    assert resumed_at in (4, 6)  # step 6's async save may have been cut short

    code, out = train_once(workdir, cache, extra=ROUND_FLAGS)
    assert code == 0, out[-3000:]
    assert f"from step {resumed_at}" in out and "round 2/2: steps 5-8 on" in out, out
    assert "round 1 done" not in out  # round 2's selection came from the checkpoint
    assert train_losses(workdir) == train_losses(reference)
    np.testing.assert_array_equal(selected_ids(workdir, 8), selected_ids(reference, 8))
    assert selection_summary(workdir)[-1] == selection_summary(reference)[-1]
    for a, b in zip(params_at(workdir, 8), params_at(reference, 8), strict=True):
        assert np.array_equal(a, b)


def test_two_processes_killed_in_round_2_resume_and_match_one(reference, cache, tmp_path):
    workdir = tmp_path / "run"
    (code0, out0, _), (code1, out1, _) = train_two_processes(
        workdir, cache, faults=(None, "KILL@7"), extra=ROUND_FLAGS
    )
    assert code1 == -signal.SIGKILL and code0 != 0, out1[-3000:]
    assert 4 in steps_saved(workdir), out0[-3000:]  # step 6's save waited for step 4's
    np.testing.assert_array_equal(selected_ids(workdir, 4), selected_ids(reference, 8))

    results = train_two_processes(workdir, cache, extra=ROUND_FLAGS)
    for code, out, _ in results:
        assert code == 0, out[-3000:]
    losses, expected = train_losses(workdir), train_losses(reference)
    assert sorted(losses) == list(range(1, 9))
    for step, loss in losses.items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-6), step
    np.testing.assert_array_equal(selected_ids(workdir, 8), selected_ids(reference, 8))
    for a, b in zip(params_at(workdir, 8), params_at(reference, 8), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
