"""The trainer's parts, each on its own: throughput, the finite guard, schedules of eval and
save, log lines, data checks before the first step, data seed, eval compiled once."""

import dataclasses

import pytest

from tests.helpers import tiny_run
from tinylm_jax.config import gin as config_lib
from tinylm_jax.data import pipeline
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.heldout import evaluate
from tinylm_jax.train import loop, run_data


@pytest.fixture(scope="module")
def tiny(data_dir):
    config = config_lib.parse(["models/tiny_test.gin"], tiny_run(steps=4))
    return config, pipeline.prepare_data(config.data, config.train.seq_len)


def test_an_empty_validation_split_fails_before_the_first_step(tiny, gin_clean):
    config, data = tiny
    no_validation = pipeline.PreparedData(data.tokenizer, data.train, [], 32, data.stats)
    with pytest.raises(ConfigError, match="validation split .* is empty.*eval_steps = 0"):
        run_data.check_data(no_validation, config)
    quiet = config.replace(train=dataclasses.replace(config.train, eval_steps=0))
    run_data.check_data(no_validation, quiet)  # no eval, no problem


def test_data_seed_orders_the_data_apart_from_the_init_seed(tiny):
    config, data = tiny

    def first_ids(**changes):
        tc = dataclasses.replace(config.train, **changes)
        return next(run_data.make_train_iterator(data, tc))["ids"].tolist()

    assert first_ids(seed=0, data_seed=7) == first_ids(seed=1, data_seed=7)  # init seed alone
    assert first_ids(seed=0, data_seed=5) != first_ids(seed=0)
    assert first_ids(seed=3, data_seed=0) == first_ids(seed=0)  # data_seed defaults to seed


def test_eval_compiles_once_per_run_and_uses_the_eval_batch_size(tiny, gin_clean):
    config, data = tiny
    config = config.replace(train=dataclasses.replace(config.train, batch_size=16, microbatches=2))
    assert config.train.resolved_eval_batch_size == 8  # batch 16 over 2 microbatches
    run = build_run(config)
    with run_context(run):
        params = init_state(run.init_fn, 0, run.shardings).params
    table = token_byte_lengths(data.tokenizer, config.model.vocab_size)
    first = evaluate(run, params, data, table, 2)
    second = evaluate(run, params, data, table, 2)
    assert first == second and first["eval_tokens"] <= 2 * 8 * 32
    assert run.eval_step._cache_size() == 1


def test_hooks_run_after_steps_and_saves(tmp_path, data_dir, gin_clean):
    seen = []
    hooks = loop.TrainHooks(
        after_step=lambda s: seen.append(("step", s)), after_save=lambda s: seen.append(("save", s))
    )
    config = config_lib.parse(
        ["models/tiny_test.gin"],
        tiny_run(steps=3) + ["CheckpointConfig.every_steps = 2", "TrainConfig.eval_steps = 0"],
    )
    loop.train(config, tmp_path, hooks)
    assert seen == [("step", 1), ("step", 2), ("save", 2), ("step", 3), ("save", 3)]
    assert (tmp_path / "config.gin").read_text() == config.gin_config
