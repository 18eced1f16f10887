"""The trainer's multi-round part: which round a run is in, what it trains on, and the step
from one round to the next (score every unit, select, restart the data on the selection).

PanGu-π Pro's multiple-round training (arXiv 2402.02791, section "Multiple-Round Training");
the selection rules are in `tinylm_jax.data.selection`. A checkpoint holds the current round
and sampling seed (`metadata.rounds`, with a per-round summary) and the round's selected
record ids (the `rounds` array item). The transition happens right after a round's last step
and is saved at once, so a run killed while scoring redoes the same deterministic scoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tinylm_jax.config.run import RunConfig
from tinylm_jax.data import selection as rounds_lib
from tinylm_jax.engine.run import Run
from tinylm_jax.errors import ConfigError
from tinylm_jax.eval.score import score_records
from tinylm_jax.parallel import rules as rules_lib


@dataclasses.dataclass(frozen=True)
class RoundState:
    """Round `round` (1-based) trains on `selected_ids` (record ids [M]; None: the whole
    split); `history` holds one JSON summary per round started; `seed` keys the sampling."""

    round: int
    seed: int
    selected_ids: np.ndarray | None
    history: tuple[dict, ...]

    def metadata(self) -> dict:
        """`metadata.rounds` of a checkpoint."""
        return {"round": self.round, "seed": self.seed, "history": list(self.history)}

    def items(self) -> dict[str, np.ndarray] | None:
        """The checkpoint's `rounds` array item (None in round 1)."""
        return None if self.selected_ids is None else {"selected_ids": self.selected_ids}


def num_units(config: RunConfig, num_records: int) -> int:
    return rounds_lib.unit_count(num_records, config.rounds.unit, config.train.batch_size)


def score_batch_size(config: RunConfig) -> int:
    return config.rounds.score_batch_size or config.train.resolved_eval_batch_size


def check_rounds(config: RunConfig, run: Run, num_records: int) -> None:
    """Fails before the first step on round settings this data or mesh cannot take."""
    if config.rounds.num_rounds == 1:
        return
    rounds_lib.partition_bounds(num_units(config, num_records), config.rounds.partitions)
    rules_lib.check_batch_divisible(
        score_batch_size(config), run.mesh, run.rules, "RoundsConfig.score_batch_size"
    )


def initial_state(config: RunConfig, num_records: int) -> RoundState:
    seed = config.train.resolved_data_seed if config.rounds.seed is None else config.rounds.seed
    steps = config.rounds.steps_per_round(config.train.num_steps)
    units = num_units(config, num_records)
    first = {"round": 1, "start_step": 0, "steps": steps[0], "units_selected": units}
    return RoundState(round=1, seed=seed, selected_ids=None, history=(first,))


def restored_state(
    config: RunConfig, num_records: int, metadata: dict, items: dict | None
) -> RoundState:
    """The RoundState a checkpoint's metadata and `rounds` item describe (a checkpoint of a
    single-round run, which has none, is in round 1)."""
    saved = metadata.get("rounds")
    if not saved:
        return initial_state(config, num_records)
    ids = None if items is None else np.asarray(items["selected_ids"], np.int64)
    if (ids is None) != (saved["round"] == 1):
        raise ConfigError(
            f"checkpoint of step {metadata.get('step')} is in round {saved['round']} but "
            f"{'lacks' if ids is None else 'has'} selected ids; it was not written by this "
            "trainer, train in a new --workdir"
        )
    return RoundState(saved["round"], saved["seed"], ids, tuple(saved["history"]))


def round_at(config: RunConfig, step: int) -> int:
    return rounds_lib.round_at(step, config.rounds.steps_per_round(config.train.num_steps))


def describe_round(config: RunConfig, state: RoundState, num_records: int) -> str:
    """The stdout line of a round (re)starting."""
    steps = config.rounds.steps_per_round(config.train.num_steps)
    start = int(np.sum(steps[: state.round - 1]))
    what = (
        f"all {num_records} sequences"
        if state.selected_ids is None
        else f"{len(state.selected_ids)} selected of {num_records} sequences"
    )
    return (
        f"round {state.round}/{config.rounds.num_rounds}: steps {start + 1}-"
        f"{start + steps[state.round - 1]} on {what}"
    )


class RoundIterator:
    """The training iterator of the current round, checkpointed like a Grain iterator.

    `make(ids, round)` builds a round's Grain iterator. A state restored before the round is
    known (`set_state`) is kept until `start(state)` builds that round's iterator, because Grain
    checks that a state matches its source (the selected ids) and sampler.
    """

    def __init__(self, make: Callable[[np.ndarray | None, int], object]):
        self._make = make
        self._inner = None
        self._pending: bytes | None = None

    def start(self, state: RoundState) -> None:
        self._inner = self._make(state.selected_ids, state.round)
        if self._pending is not None:
            self._inner.set_state(self._pending)
            self._pending = None

    def restart(self, state: RoundState) -> None:
        """Begins a new round from its first batch (drops any restored position)."""
        self._pending = None
        self.start(state)

    def get_state(self) -> bytes:
        return self._inner.get_state()

    def set_state(self, state: bytes) -> None:
        self._pending = state

    def start_prefetch(self) -> None:
        """Grain's checkpoint handler calls this after a restore; the inner iterator is made
        (and prefetches) in `start`."""

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._inner)


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
    train = f", training {train_tokens_per_second:,.0f} tok/s" if train_tokens_per_second else ""
    return (
        f"round {record['round'] - 1} done at step {step}: scored {record['units_scored']} units "
        f"in {record['score_seconds']:.1f}s ({record['score_tokens_per_second']:,.0f} tok/s"
        f"{train}); selected {record['units_selected']} (mean loss "
        f"{record['score_loss_mean_selected']:.4f} vs {record['score_loss_mean_all']:.4f} all)"
    )
