"""Per-arm hyper-parameter search with ZOOpt's sequential RACOS (SRacos), in ask/tell form.

Liu et al., "ZOOpt: Toolbox for Derivative-Free Optimization" (arXiv 1801.00329); SRacos is
Hu, Qian and Yu, "Sequential Classification-Based Optimization for Direct Policy Search"
(AAAI 2017). A spec's `search` maps gin fields to ranges:

    {"OptimizerConfig": {"learning_rate": {"log_uniform": [1e-4, 3e-2]},
                         "warmup_steps": [0, 0.1],              # uniform (also {"uniform": ...})
                         "schedule": {"choice": ["cosine", "wsd"]}},
     "TrainConfig": {"batch_size": {"int": [8, 32]}}}

ZOOpt searches the unit cube (one coordinate per field, in the order above after sorting);
`values` maps a point to the fields' values. ZOOpt 0.4.2's step-wise `SRacosTune.suggest()`
returns None forever once its initial samples are completed one at a time (it waits on a flag
only a parallel caller resets), so `ask` takes the initial samples from `suggest()` and every
later one from SRacos's own classifier sampler (`sample_solution`); `tell` is its
`complete()`. ZOOpt draws from numpy's global generator, so each searcher keeps its own
generator state and swaps it in around every call: searches of several arms interleave
without changing each other, and replaying a searcher's asks and tells rebuilds it exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from tinylm_jax.errors import ConfigError

KINDS = ("uniform", "log_uniform", "int", "choice")
# ZOOpt rounds continuous coordinates to this precision; fine enough for any range here.
PRECISION = 1e-6


@dataclasses.dataclass(frozen=True)
class SearchDim:
    """One searched gin field: `binding` ('Configurable.field'), its kind and range."""

    binding: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    choices: tuple = ()

    def value(self, u: float):
        """The field's value at unit coordinate `u`."""
        # Six significant digits: as fine as the search resolves, and readable in gin.
        if self.kind == "uniform":
            return float(f"{self.low + u * (self.high - self.low):.6g}")
        if self.kind == "log_uniform":
            log_value = math.log(self.low) + u * (math.log(self.high) - math.log(self.low))
            return float(f"{math.exp(log_value):.6g}")
        if self.kind == "int":
            return int(round(self.low + u * (self.high - self.low)))
        return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]


def parse_search(tree: Mapping | None) -> tuple[SearchDim, ...]:
    """The spec's `search` ({Configurable: {field: range}}) as dims in a stable order."""
    dims = []
    for configurable, fields in sorted(dict(tree or {}).items()):
        if not isinstance(fields, Mapping):
            raise ConfigError(f"sweep spec: search.{configurable} must map fields to ranges")
        for field, space in sorted(dict(fields).items()):
            dims.append(_parse_dim(f"{configurable}.{field}", space))
    return tuple(dims)


def _parse_dim(binding: str, space) -> SearchDim:
    if isinstance(space, (list, tuple)):
        space = {"uniform": space}
    space = dict(space) if isinstance(space, Mapping) else None
    if not space or len(space) != 1 or next(iter(space)) not in KINDS:
        raise ConfigError(
            f"sweep spec: search {binding} must be [low, high] or one of "
            f"{{{', '.join(f'{k!r}: ...' for k in KINDS)}}}"
        )
    kind, values = next(iter(space.items()))
    values = tuple(values)
    if kind == "choice":
        if not values:
            raise ConfigError(f"sweep spec: search {binding} needs at least one choice")
        return SearchDim(binding, kind, choices=values)
    if len(values) != 2 or not values[0] < values[1]:
        raise ConfigError(f"sweep spec: search {binding} needs [low, high] with low < high")
    if kind == "log_uniform" and values[0] <= 0:
        raise ConfigError(f"sweep spec: search {binding} is log-uniform, so low must be > 0")
    return SearchDim(binding, kind, float(values[0]), float(values[1]))


def values(dims: Sequence[SearchDim], point: Sequence[float]) -> dict[str, object]:
    """{binding: value} of a unit-cube point."""
    return {d.binding: d.value(u) for d, u in zip(dims, point, strict=True)}


class Searcher:
    """One arm's SRacos search over the unit cube, stepped by `ask` and `tell`.

    `budget` is the most trials it will be asked for (ZOOpt sizes its sample sets by it);
    equal (dims, budget, seed) and equal asks and tells give equal points.
    """

    def __init__(self, num_dims: int, budget: int, seed: int):
        from zoopt import Dimension2, Parameter, ValueType
        from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

        self._rng_state = np.random.RandomState(seed).get_state()
        # Dimension2 also sets ZOOpt's module-level rounding table; every searcher searches a
        # unit cube at one precision, so searchers of any size agree on it.
        dimension = Dimension2([(ValueType.CONTINUOUS, [0.0, 1.0], PRECISION)] * num_dims)
        # ZOOpt sizes its sample sets for budgets of 4 and more.
        parameter = Parameter(budget=max(budget, 4))
        with self._own_rng():
            self._tune = SRacosTune(dimension, parameter, parallel_num=1)
        self._initial_left = parameter.get_train_size()
        self._initial_pending: set[tuple[float, ...]] = set()
        self._asked: dict[tuple[float, ...], object] = {}

    @contextlib.contextmanager
    def _own_rng(self):
        outer = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outer)

    @property
    def can_ask(self) -> bool:
        """False while SRacos waits for its initial samples' results before sampling more."""
        return self._initial_left > 0 or not self._initial_pending

    def ask(self) -> tuple[float, ...] | None:
        """The next point to try; None if the space is used up or `can_ask` is False."""
        if not self.can_ask:
            return None
        with self._own_rng():
            if self._initial_left > 0:
                solution = self._tune.suggest()
                solution = None if isinstance(solution, str) else solution  # "FINISHED"
            else:
                solution, distinct = self._tune.sample_solution(self._tune.ub)
                solution = solution if distinct else None
        if solution is None:
            return None
        point = tuple(float(u) for u in solution.get_x())
        if self._initial_left > 0:
            self._initial_left -= 1
            self._initial_pending.add(point)
        self._asked[point] = solution
        return point

    def tell(self, point: Sequence[float], value: float) -> None:
        """Reports `value` (lower is better) of an asked point."""
        point = tuple(point)
        solution = self._asked.pop(point)
        self._initial_pending.discard(point)
        with self._own_rng():
            self._tune.complete(solution, value)
