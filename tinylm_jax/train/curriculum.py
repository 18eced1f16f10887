"""TinyHelen's curriculum as the round schedule's stages (`RoundsConfig.selection='tinyhelen'`).

TinyHelen (arXiv 2501.00522; its trainer's `_maybe_reinit_train_dataset` and
`check_iterative_metric_value`) trains first on the easiest 5% of the data and adds 5% more
each time early stopping fires on the validation loss, until the whole set. Here a stage is a
round of `tinylm_jax.train.rounds`: its selected record ids and the early-stopping state live
in the checkpoint part `rounds`, so a resumed run continues the same stage exactly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping

import numpy as np
from etils import epath

from tinylm_jax.config.run import RunConfig
from tinylm_jax.data import selection as rounds_lib
from tinylm_jax.engine.run import Run
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.score import score_records
from tinylm_jax.train.round_state import RoundState


def _units(config: RunConfig, num_records: int) -> int:
    return rounds_lib.unit_count(num_records, config.rounds.unit, config.train.batch_size)


def read_reference(path: str, num_records: int) -> tuple[np.ndarray, np.ndarray]:
    """(summed nll [N], target tokens [N]) from a `tinylm score` file of `num_records` rows."""
    fix = (
        "write it with `tinylm score --workdir=REF --split=train --out=FILE` on this run's data "
        "and tokenizer, and set RoundsConfig.reference = FILE"
    )
    file = epath.Path(path)
    if not file.is_file():
        raise ConfigError(f"RoundsConfig.reference={path!r} is not a scores file; {fix}")
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if [r.get("id") for r in rows] != list(range(num_records)):
        raise ConfigError(
            f"RoundsConfig.reference={path!r} scores {len(rows)} records, this run's training "
            f"split has {num_records} (or its ids are out of order); {fix}"
        )
    tokens_N = np.array([r["tokens"] for r in rows], np.float64)
    return np.array([r["loss"] for r in rows], np.float64) * tokens_N, tokens_N


def check(config: RunConfig, num_records: int) -> None:
    """Fails before the first step on TinyHelen settings this data cannot take."""
    rc, tc = config.rounds, config.train
    if rc.advance == "plateau" and not (tc.eval_every and tc.eval_steps):
        raise ConfigError(
            "RoundsConfig.advance='plateau' ends a stage on the held-out loss of periodic evals; "
            "set TrainConfig.eval_every and eval_steps > 0, or use advance='steps'"
        )
    if rc.difficulty == "reference_loss":
        read_reference(str(rc.reference), num_records)


def fixed_difficulty(config: RunConfig, train_source) -> np.ndarray | None:
    """[U] the difficulty that needs no model ('length', 'reference_loss'); None for
    'self_loss'."""
    rc, bs, n = config.rounds, config.train.batch_size, len(train_source)
    if rc.difficulty == "length":
        segments_NL = np.stack([np.asarray(train_source[i]["segment_ids"]) for i in range(n)])
        return rounds_lib.unit_means(rounds_lib.record_lengths(segments_NL), rc.unit, bs)
    if rc.difficulty == "reference_loss":
        nll_N, tokens_N = read_reference(str(rc.reference), n)
        return rounds_lib.unit_losses(nll_N, tokens_N, rc.unit, bs)[0]
    return None


def difficulty(
    run: Run,
    params,
    train_source,
    after_score_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """([U] difficulty of every unit, numeric extras for the selection record)."""
    config, rc = run.config, run.config.rounds
    fixed_U = fixed_difficulty(config, train_source)
    if fixed_U is not None:
        return fixed_U, {}
    batch = rc.score_batch_size or config.train.resolved_eval_batch_size
    scores = score_records(run, params, train_source, batch, after_score_batch)
    extras = {
        "score_seconds": scores.seconds,
        "score_tokens": int(np.sum(scores.tokens_N)),
        "score_tokens_per_second": scores.tokens_per_second,
    }
    bs = config.train.batch_size
    return rounds_lib.unit_losses(scores.nll_N, scores.tokens_N, rc.unit, bs)[0], extras


def _summary(
    config: RunConfig, stage: int, step: int, units: np.ndarray, ids: np.ndarray, scored_U
) -> dict:
    rc = config.rounds
    steps = rc.steps_per_round(config.train.num_steps)
    summary = {
        "round": stage,
        "stage_fraction": rounds_lib.stage_fraction(stage, rc.start_fraction, rc.fraction_step),
        "start_step": step,
        "steps": steps[stage - 1] if rc.advance == "steps" else None,
        "units_scored": 0 if scored_U is None else len(scored_U),
        "units_selected": len(units),
        "records_selected": len(ids),
    }
    if scored_U is not None:
        for name, values in (("all", scored_U), ("selected", scored_U[units])):
            summary[f"difficulty_mean_{name}"] = float(np.mean(values))
    return summary


def _stage(config: RunConfig, difficulty_U: np.ndarray | None, num_units: int, seed: int, k: int):
    rc = config.rounds
    fraction = rounds_lib.stage_fraction(k, rc.start_fraction, rc.fraction_step)
    if difficulty_U is None:
        return rounds_lib.first_units(num_units, fraction, seed)
    return rounds_lib.easiest_units(difficulty_U, fraction)


def first_stage(config: RunConfig, train_source, seed: int) -> RoundState:
    """Stage 1's RoundState. 'length' and 'reference_loss' rank the units now; 'self_loss'
    has no trained model yet and draws its first units at random (`first_units`)."""
    rc, n = config.rounds, len(train_source)
    difficulty_U = fixed_difficulty(config, train_source)
    units = _stage(config, difficulty_U, _units(config, n), seed, 1)
    ids = rounds_lib.unit_record_ids(units, rc.unit, config.train.batch_size, n)
    summary = _summary(config, 1, 0, units, ids, difficulty_U)
    return RoundState(1, seed, ids, (summary,), {"best": None, "bad": 0})


def next_stage(
    run: Run, params, train_source, state: RoundState, step: int, after_score_batch=None
) -> tuple[RoundState, dict]:
    """The next stage's RoundState and metrics record: ranks every unit (rescoring with
    `params` under 'self_loss') and takes the easiest `stage_fraction`."""
    config, n = run.config, len(train_source)
    difficulty_U, extras = difficulty(run, params, train_source, after_score_batch)
    units = _stage(config, difficulty_U, len(difficulty_U), state.seed, state.round + 1)
    ids = rounds_lib.unit_record_ids(units, config.rounds.unit, config.train.batch_size, n)
    summary = {**_summary(config, state.round + 1, step, units, ids, difficulty_U), **extras}
    new = RoundState(state.round + 1, state.seed, ids, (*state.history, summary), state.plateau)
    return new, stage_record(summary)


def stage_record(summary: dict) -> dict:
    """The metrics record of a stage's selection (numbers only)."""
    return {k: v for k, v in summary.items() if k not in ("start_step", "steps")}


def observe_eval(
    config: RunConfig, state: RoundState, step: int, last: Mapping[str, float]
) -> tuple[RoundState, bool]:
    """(state, whether the stage ends now): after a periodic eval at `step`, TinyHelen's
    early-stopping check on its `eval_loss`; the last stage (the whole split) never ends."""
    rc, tc = config.rounds, config.train
    evaluated = tc.eval_every and step % tc.eval_every == 0 and step != tc.num_steps
    if not evaluated or "eval_loss" not in last:
        return state, False
    if rounds_lib.stage_fraction(state.round, rc.start_fraction, rc.fraction_step) >= 1.0:
        return state, False
    plateau, ends = rounds_lib.plateau_update(
        state.plateau or {}, float(last["eval_loss"]), rc.patience, rc.min_delta
    )
    return dataclasses.replace(state, plateau=plateau), ends


def stage_line(record: dict, step: int) -> str:
    """The stdout line of a stage switch."""
    timing = f" (scored in {record['score_seconds']:.1f}s)" if "score_seconds" in record else ""
    return (
        f"stage {record['round'] - 1} done at step {step}{timing}: the next takes the easiest "
        f"{record['units_selected']} of {record['units_scored']} units"
    )


def describe(config: RunConfig, stage: int, start: int, what: str) -> str:
    """The stdout line of a stage (re)starting."""
    rc = config.rounds
    fraction = rounds_lib.stage_fraction(stage, rc.start_fraction, rc.fraction_step)
    return (
        f"stage {stage}/{rc.num_stages} (TinyHelen, {rc.difficulty}, advance={rc.advance}): the "
        f"easiest {100 * fraction:.0f}% from step {start + 1}, {what}"
    )
