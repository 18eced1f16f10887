"""Multiple-round training's config-free parts: units, partitions, the selection rules, the
round schedule (PanGu-π Pro, arXiv 2402.02791, section "Multiple-Round Training").

After a round the frozen model's loss l_u of every training unit u (a packed sequence, or a
batch of them) decides the next round's data. `softmax_loss` draws r·n units without
replacement with p_u ∝ exp(l_u / τ), exactly and in one pass by Gumbel-top-k: the k largest
of l_u / τ + G_u, G_u i.i.d. standard Gumbel, are distributed as k successive draws without
replacement from softmax(l / τ) (the Gumbel-top-k trick, Kool et al., arXiv 1903.06059).

Everything here is numpy on the host and deterministic given its arguments, so every process
of a multi-process run computes the same ids from the same (all-gathered) losses.
"""

from __future__ import annotations

import numpy as np

from tinylm_jax.errors import ConfigError


def unit_count(num_records: int, unit: str, batch_size: int) -> int:
    """Units of a split of `num_records` packed records ('batch': groups of `batch_size`
    consecutive ids, the last one possibly smaller)."""
    return num_records if unit == "sequence" else -(-num_records // batch_size)


def unit_losses(
    nll_N: np.ndarray, tokens_N: np.ndarray, unit: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean loss per target token [U], tokens [U]) of each unit from per-record summed
    negative log-likelihoods `nll_N` and target-token counts `tokens_N`."""
    if unit == "batch":
        starts = np.arange(0, len(nll_N), batch_size)
        nll_N, tokens_N = np.add.reduceat(nll_N, starts), np.add.reduceat(tokens_N, starts)
    return nll_N / np.maximum(tokens_N, 1), tokens_N


def unit_record_ids(
    unit_ids: np.ndarray, unit: str, batch_size: int, num_records: int
) -> np.ndarray:
    """The record ids [M] (ascending) that the units `unit_ids` cover."""
    if unit == "sequence":
        return np.sort(unit_ids).astype(np.int64)
    ids = (np.sort(unit_ids)[:, None] * batch_size + np.arange(batch_size)[None, :]).reshape(-1)
    return ids[ids < num_records].astype(np.int64)


def partition_bounds(num_units: int, partitions: int) -> np.ndarray:
    """[K + 1] starts of K contiguous parts of the id range [0, num_units) (sizes differ by at
    most one); part k is [bounds[k], bounds[k + 1])."""
    if not 1 <= partitions <= num_units:
        raise ConfigError(
            f"RoundsConfig.partitions={partitions} must lie in [1, {num_units}] (the units of "
            "the training split); lower it"
        )
    sizes = np.full(partitions, num_units // partitions)
    sizes[: num_units % partitions] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def selected_count(part_size: int, fraction: float) -> int:
    """Units a part of `part_size` gives to a selection of `fraction` (rounded half up, at
    least one, so that every part stays represented)."""
    return min(part_size, max(1, int(np.floor(fraction * part_size + 0.5))))


def gumbel_top_k(logits_N: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices drawn without replacement with p ∝ exp(logits), ascending [k]."""
    keys_N = logits_N.astype(np.float64) + rng.gumbel(size=logits_N.shape)
    return np.sort(np.argpartition(-keys_N, k - 1)[:k])


def select_units(
    losses_U: np.ndarray,
    *,
    selection: str,
    sampling_rate: float,
    temperature: float,
    partitions: int,
    seed: int,
    round_index: int,
) -> np.ndarray:
    """Ascending ids of the units round `round_index` trains on, chosen inside each of the
    `partitions` contiguous parts separately (each gives `selected_count` units).

    The noise of part k of round `round_index` comes from the seed (seed, round_index, k), so
    the same run draws the same ids however often it is resumed.
    """
    bounds = partition_bounds(len(losses_U), partitions)
    chosen = []
    for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        losses = losses_U[start:stop]
        k = selected_count(len(losses), sampling_rate)
        rng = np.random.default_rng([seed, round_index, part])
        logits = losses / temperature if selection == "softmax_loss" else np.zeros_like(losses)
        picked = gumbel_top_k(logits, k, rng)
        chosen.append(picked + start)
    return np.concatenate(chosen).astype(np.int64)


def stage_fraction(stage: int, start_fraction: float, fraction_step: float) -> float:
    """The fraction of units TinyHelen's stage `stage` (1-based) trains on: start + step·(k − 1),
    at most 1 (arXiv 2501.00522; its trainer's `_maybe_reinit_train_dataset`)."""
    return min(1.0, round(start_fraction + fraction_step * (stage - 1), 12))


def stage_count(num_units: int, fraction: float) -> int:
    """Units a stage of `fraction` holds: ⌊fraction·n⌋ as TinyHelen's `select(range(int(f·n)))`,
    at least one."""
    return min(num_units, max(1, int(np.floor(fraction * num_units + 1e-9))))


def easiest_units(difficulty_U: np.ndarray, fraction: float) -> np.ndarray:
    """Ascending ids of the `stage_count` units of lowest difficulty (ties: lower id first)."""
    k = stage_count(len(difficulty_U), fraction)
    return np.sort(np.argsort(difficulty_U, kind="stable")[:k]).astype(np.int64)


def first_units(num_units: int, fraction: float, seed: int) -> np.ndarray:
    """Stage 1 under the model's own loss, before the model has learned anything: a seeded
    uniform `stage_count` of the units (TinyHelen's code takes the unsorted dataset's first
    ones; a random draw avoids the bias of document order)."""
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.permutation(num_units)[: stage_count(num_units, fraction)]).astype(np.int64)


def record_lengths(segment_ids_NL: np.ndarray) -> np.ndarray:
    """[N] mean length in tokens of the document pieces in each packed record (segment 0 is
    padding): the `length` difficulty, shorter documents first."""
    real_N = np.sum(segment_ids_NL > 0, axis=1)
    return real_N / np.maximum(np.max(segment_ids_NL, axis=1), 1)


def unit_means(values_N: np.ndarray, unit: str, batch_size: int) -> np.ndarray:
    """[U] the mean of a per-record value over each unit's records."""
    if unit == "sequence":
        return values_N.astype(np.float64)
    starts = np.arange(0, len(values_N), batch_size)
    counts = np.diff(np.append(starts, len(values_N)))
    return np.add.reduceat(values_N.astype(np.float64), starts) / counts


def plateau_update(
    plateau: dict, eval_loss: float, patience: int, min_delta: float
) -> tuple[dict, bool]:
    """TinyHelen's early-stopping check on the held-out loss: (new state, whether the stage
    ends). A loss below the best by more than `min_delta` resets the count; otherwise it grows,
    and at `patience` the stage ends and the count restarts. The best carries across stages,
    as in its trainer's `check_iterative_metric_value`."""
    best, bad = plateau.get("best"), int(plateau.get("bad", 0))
    if best is None or (eval_loss < best and abs(eval_loss - best) > min_delta):
        best, bad = float(eval_loss), 0
    else:
        bad += 1
    ends = bad >= patience
    return {"best": best, "bad": 0 if ends else bad}, ends


def round_ends(steps_per_round: tuple[int, ...]) -> np.ndarray:
    """[R] the step count at which each round ends."""
    return np.cumsum(steps_per_round)


def round_at(step: int, steps_per_round: tuple[int, ...]) -> int:
    """The (1-based) round that trains step `step + 1`, i.e. the round of a run that has done
    `step` steps; the last round also holds the final step."""
    ends = round_ends(steps_per_round)
    return min(1 + int(np.sum(ends <= step)), len(steps_per_round))


def loss_summary(losses_U: np.ndarray, selected: np.ndarray) -> dict[str, float]:
    """Mean and quantiles of the loss of all units vs the selected ones (nats per token)."""
    out = {}
    for name, values in (("all", losses_U), ("selected", losses_U[selected])):
        out[f"loss_mean_{name}"] = float(np.mean(values))
        for q in (10, 50, 90):
            out[f"loss_q{q}_{name}"] = float(np.percentile(values, q))
    return out
