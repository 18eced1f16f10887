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


def selection_fraction(selection: str, sampling_rate: float, round_index: int) -> float:
    """The fraction of units round `round_index` (2, 3, ...) trains on: r for `softmax_loss`
    and `uniform`; min(1, r·(k − 1)) for `easiest_first`, a curriculum that grows by r a round
    (TinyHelen, arXiv 2501.00522: start from the easiest part, then widen it)."""
    if selection == "easiest_first":
        return min(1.0, sampling_rate * (round_index - 1))
    return sampling_rate


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
    fraction = selection_fraction(selection, sampling_rate, round_index)
    bounds = partition_bounds(len(losses_U), partitions)
    chosen = []
    for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        losses = losses_U[start:stop]
        k = selected_count(len(losses), fraction)
        if selection == "easiest_first":
            picked = np.sort(np.argsort(losses, kind="stable")[:k])
        else:
            rng = np.random.default_rng([seed, round_index, part])
            logits = losses / temperature if selection == "softmax_loss" else np.zeros_like(losses)
            picked = gumbel_top_k(logits, k, rng)
        chosen.append(picked + start)
    return np.concatenate(chosen).astype(np.int64)


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
