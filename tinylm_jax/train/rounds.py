"""Multiple rounds as the loop's data schedule: which round a run is in, what it trains on,
and the switch from one round to the next (score every unit, select, restart the data on the
selection), attached to the loop through `tinylm_jax.train.hooks`.

PanGu-π Pro's multiple-round training (arXiv 2402.02791, section "Multiple-Round Training");
the selection rules are in `tinylm_jax.data.selection`. `Rounds` is the checkpoint part
`rounds`: the current round and sampling seed (`metadata.rounds`, with a per-round summary)
and the round's selected record ids (the `rounds` array item). The switch happens right after
a round's last step and is saved at once, so a run killed while scoring redoes the same
deterministic scoring. A single-round run is round 1 throughout, on the whole split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import numpy as np

from tinylm_jax.config.run import RunConfig
from tinylm_jax.data import selection as rounds_lib
from tinylm_jax.engine.run import Run
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.score import score_records
from tinylm_jax.parallel import rules as rules_lib
from tinylm_jax.train import curriculum
from tinylm_jax.train.hooks import Hook, StepInfo, SwitchableIterator
from tinylm_jax.train.metrics import MetricsWriter
from tinylm_jax.train.prefetch import CheckpointableIterator, DevicePrefetcher
from tinylm_jax.train.round_state import RoundState


def num_units(config: RunConfig, num_records: int) -> int:
    return rounds_lib.unit_count(num_records, config.rounds.unit, config.train.batch_size)


def score_batch_size(config: RunConfig) -> int:
    return config.rounds.score_batch_size or config.train.resolved_eval_batch_size


def check_rounds(config: RunConfig, run: Run, num_records: int) -> None:
    """Fails before the first step on round settings this data or mesh cannot take."""
    rc = config.rounds
    if not rc.scheduled:
        return
    if rc.tinyhelen:
        curriculum.check(config, num_records)
    else:
        rounds_lib.partition_bounds(num_units(config, num_records), rc.partitions)
    rules_lib.check_batch_divisible(
        score_batch_size(config), run.mesh, run.rules, "RoundsConfig.score_batch_size"
    )


def initial_state(config: RunConfig, train_source) -> RoundState:
    seed = config.train.resolved_data_seed if config.rounds.seed is None else config.rounds.seed
    if config.rounds.tinyhelen:
        return curriculum.first_stage(config, train_source, seed)
    steps = config.rounds.steps_per_round(config.train.num_steps)
    units = num_units(config, len(train_source))
    first = {"round": 1, "start_step": 0, "steps": steps[0], "units_selected": units}
    return RoundState(round=1, seed=seed, selected_ids=None, history=(first,))


def restored_state(
    config: RunConfig, train_source, saved: dict | None, items: dict | None
) -> RoundState:
    """The RoundState a checkpoint's `metadata.rounds` and `rounds` item describe (a
    checkpoint without them, e.g. an imported one, is in round 1)."""
    if not saved:
        return initial_state(config, train_source)
    ids = None if items is None else np.asarray(items["selected_ids"], np.int64)
    if (ids is None) != (saved["round"] == 1 and not config.rounds.tinyhelen):
        raise ConfigError(
            f"a checkpoint in round {saved['round']} "
            f"{'lacks' if ids is None else 'has'} selected ids (the `rounds` item); it was not "
            "written by this trainer: move that step away or train in a new --workdir"
        )
    history = tuple(saved["history"])
    return RoundState(saved["round"], saved["seed"], ids, history, saved.get("plateau"))


def round_at(config: RunConfig, step: int) -> int:
    return rounds_lib.round_at(step, config.rounds.steps_per_round(config.train.num_steps))


def describe_round(config: RunConfig, state: RoundState, num_records: int) -> str:
    """The stdout line of a round (re)starting."""
    steps = config.rounds.steps_per_round(config.train.num_steps)
    start = int(np.sum(steps[: state.round - 1]))
    if config.rounds.tinyhelen:
        start = int(state.history[-1]["start_step"])
    what = (
        f"all {num_records} sequences"
        if state.selected_ids is None
        else f"{len(state.selected_ids)} selected of {num_records} sequences"
    )
    if config.rounds.tinyhelen:
        return curriculum.describe(config, state.round, start, what)
    return (
        f"round {state.round}/{config.rounds.num_rounds}: steps {start + 1}-"
        f"{start + steps[state.round - 1]} on {what}"
    )


def next_round(
    run: Run,
    params,
    train_source,
    state: RoundState,
    step: int,
    after_score_batch: Callable[[int], None] | None = None,
) -> tuple[RoundState, dict]:
    """Scores every unit with frozen `params`, selects the next round's units; returns the new
    RoundState and its metrics record (selection summary and scoring throughput)."""
    config, rc = run.config, run.config.rounds
    if rc.tinyhelen:
        return curriculum.next_stage(run, params, train_source, state, step, after_score_batch)
    scores = score_records(run, params, train_source, score_batch_size(config), after_score_batch)
    losses_U, _ = rounds_lib.unit_losses(
        scores.nll_N, scores.tokens_N, rc.unit, config.train.batch_size
    )
    new_round = state.round + 1
    units = rounds_lib.select_units(
        losses_U,
        selection=rc.selection,
        sampling_rate=rc.sampling_rate,
        temperature=rc.temperature,
        partitions=rc.partitions,
        seed=state.seed,
        round_index=new_round,
    )
    ids = rounds_lib.unit_record_ids(units, rc.unit, config.train.batch_size, len(train_source))
    summary = {
        "round": new_round,
        "start_step": step,
        "steps": config.rounds.steps_per_round(config.train.num_steps)[new_round - 1],
        "units_scored": len(losses_U),
        "units_selected": len(units),
        "records_selected": len(ids),
        **rounds_lib.loss_summary(losses_U, units),
        "score_seconds": scores.seconds,
        "score_tokens": int(np.sum(scores.tokens_N)),
        "score_tokens_per_second": scores.tokens_per_second,
    }
    new_state = RoundState(new_round, state.seed, ids, (*state.history, summary))
    record = {k: v for k, v in summary.items() if k not in ("start_step", "steps")}
    return new_state, {f"score_{k}" if k.startswith("loss") else k: v for k, v in record.items()}


def score_line(record: dict, step: int, train_tokens_per_second: float | None) -> str:
    if "stage_fraction" in record:
        return curriculum.stage_line(record, step)
    train = f", training {train_tokens_per_second:,.0f} tok/s" if train_tokens_per_second else ""
    return (
        f"round {record['round'] - 1} done at step {step}: scored {record['units_scored']} units "
        f"in {record['score_seconds']:.1f}s ({record['score_tokens_per_second']:,.0f} tok/s"
        f"{train}); selected {record['units_selected']} (mean loss "
        f"{record['score_loss_mean_selected']:.4f} vs {record['score_loss_mean_all']:.4f} all)"
    )


class Rounds:
    """The round schedule of a run: the checkpoint part `rounds` (see `CheckpointPart`), the
    current round's iterator for `SwitchableIterator`, and the move to the next round.

    `make(ids, round)` builds the batch iterator of a round over the record ids `ids` (None:
    the whole split).
    """

    def __init__(
        self,
        run: Run,
        train_source,
        make: Callable[[np.ndarray | None, int], CheckpointableIterator],
    ):
        self.run = run
        self._train = train_source
        self._make = make
        self.state = initial_state(run.config, train_source)
        self._fresh = False  # a fresh start logs its first stage's selection (TinyHelen)

    def save(self) -> tuple[dict, dict[str, np.ndarray] | None]:
        return self.state.metadata(), self.state.items()

    def restore(self, metadata: dict | None, arrays: dict[str, np.ndarray] | None) -> None:
        self.state = restored_state(self.run.config, self._train, metadata, arrays)
        self._fresh = metadata is None and self.run.config.rounds.tinyhelen

    def first_record(self) -> dict | None:
        """The first stage's selection record of a fresh start, once (TinyHelen)."""
        if not self._fresh:
            return None
        self._fresh = False
        return curriculum.stage_record(self.state.history[0])

    def iterator(self) -> CheckpointableIterator:
        """The current round's batch iterator, from its first batch."""
        return self._make(self.state.selected_ids, self.state.round)

    def tags(self) -> dict[str, int]:
        """What every metrics record says of the schedule."""
        return {"round": self.state.round}

    def describe(self) -> str:
        return describe_round(self.run.config, self.state, len(self._train))

    def due(self, step: int, last: Mapping[str, float]) -> bool:
        """Whether the round ends at `step` steps done (under TinyHelen's 'plateau', the
        eval this step just ran, if any, in `last`, may end the stage)."""
        rc = self.run.config.rounds
        if rc.tinyhelen and rc.advance == "plateau":
            self.state, ends = curriculum.observe_eval(self.run.config, self.state, step, last)
            return ends
        return round_at(self.run.config, step) > self.state.round

    def advance(self, params, step: int, after_score_batch=None) -> dict:
        """Scores with `params`, moves to the next round; returns its metrics record."""
        self.state, record = next_round(
            self.run, params, self._train, self.state, step, after_score_batch
        )
        return record


def switch_hook(
    rounds: Rounds,
    source: SwitchableIterator,
    batches: DevicePrefetcher,
    writer: MetricsWriter,
    *,
    check: Callable[[StepInfo], None],
    last: Mapping[str, float],
    after_score_batch: Callable[[int], None] | None = None,
) -> Hook:
    """The round switch: right after a round's last step, `check`s the state, scores with the
    frozen params, restarts `batches` on the next round's selection and asks for a checkpoint
    at once, so a resumed run never scores the same params twice. `last` holds the last
    logged training metrics (their throughput goes into the scoring line)."""

    def switch(info: StepInfo) -> StepInfo:
        first = rounds.first_record()
        if first is not None:
            writer.write(0, first)
        if not rounds.due(info.step, last):
            return info
        check(info)
        batches.stop()  # the finished round's batches read ahead are not needed
        record = rounds.advance(info.state.params, info.step, after_score_batch)
        source.switch()
        batches.start()
        line = score_line(record, info.step, last.get("tokens_per_second"))
        writer.write(info.step, record, line)
        if jax.process_index() == 0:
            print(rounds.describe(), flush=True)
        return dataclasses.replace(info, save=True, paused=True)

    return switch
