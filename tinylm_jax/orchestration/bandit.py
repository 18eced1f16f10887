"""ER-UCB: the extreme-region upper-confidence-bound bandit that allocates a sweep's budget.

Hu et al., "Cascaded Algorithm Selection with Extreme-Region UCB Bandit" (IEEE TPAMI 2021):
each arm (an architecture) runs its own hyper-parameter search, and the bandit should find
the arm whose *best* search result is best, not the arm with the best average. Following the
public reimplementation in amirbalef/CASH_with_Bandits, rewards of all arms are min-max
scaled to [0, 1] together, and arm i with scaled rewards r (n_i pulls, t pulls in all) scores

    index_i = γ·mean(r − β) + sqrt(mean((r − β)²) / θ) + sqrt(2 ln t / n_i)
              + sqrt(sqrt(2 ln t / n_i) / θ)

The second term grows with the spread of rewards above and below β, so an arm with a
heavy upper tail (a few very good trials) keeps being pulled even when its mean is lower.
Defaults: β = 0.6, θ = 0.01, γ = 20. With γ = 20 the mean term dominates until an arm has
shown its upper tail, so every arm is first pulled `init_pulls` times (round robin): an arm
whose first result happens to be poor is not dropped at once. Pure functions: the sweep
keeps the rewards.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class ErUcbConfig:
    beta: float = 0.6
    theta: float = 0.01
    gamma: float = 20.0
    init_pulls: int = 2


def scale_rewards(rewards: Sequence[Sequence[float]]) -> list[list[float]]:
    """Min-max scales every arm's rewards by the range over all arms (all 0.5 if flat)."""
    flat = [r for arm in rewards for r in arm]
    if not flat:
        return [[] for _ in rewards]
    low, high = min(flat), max(flat)
    if high == low:
        return [[0.5] * len(arm) for arm in rewards]
    return [[(r - low) / (high - low) for r in arm] for arm in rewards]


def indices(
    rewards: Sequence[Sequence[float]],
    pulls: Sequence[int],
    config: ErUcbConfig = ErUcbConfig(),
) -> list[float]:
    """The ER-UCB index of every arm (higher is pulled first; inf below `init_pulls` pulls).

    `rewards[i]` are arm i's finished results (higher is better); `pulls[i]` >= len of them
    counts its pulls including ones still running, so a wave of parallel trials spreads out.
    """
    if len(rewards) != len(pulls):
        raise ValueError(f"{len(rewards)} reward lists for {len(pulls)} pull counts")
    total = sum(pulls)
    out = []
    for scaled, n in zip(scale_rewards(rewards), pulls, strict=True):
        if n < max(config.init_pulls, 1):
            out.append(math.inf)
            continue
        explore = math.sqrt(2 * math.log(max(total, 1)) / n)
        index = explore + math.sqrt(explore / config.theta)
        if scaled:
            centred = [r - config.beta for r in scaled]
            index += config.gamma * sum(centred) / len(centred)
            index += math.sqrt(sum(c * c for c in centred) / len(centred) / config.theta)
        out.append(index)
    return out


def choose(
    rewards: Sequence[Sequence[float]],
    pulls: Sequence[int],
    allowed: Sequence[bool],
    config: ErUcbConfig = ErUcbConfig(),
) -> int | None:
    """The allowed arm with the highest index, or None if none is allowed. Ties (the round
    robin's infinite indices) go to the arm pulled least, then to the first."""
    scores = indices(rewards, pulls, config)
    scored = [
        (score, -n, -i)
        for i, (score, n, ok) in enumerate(zip(scores, pulls, allowed, strict=True))
        if ok
    ]
    return -max(scored)[2] if scored else None
