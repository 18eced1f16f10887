"""The round schedule's checkpointed state (multiple rounds, TinyHelen's stages)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class RoundState:
    """Round `round` (1-based) trains on `selected_ids` (record ids [M]; None: the whole
    split); `history` holds one JSON summary per round started; `seed` keys the sampling."""

    round: int
    seed: int
    selected_ids: np.ndarray | None
    history: tuple[dict, ...]
    plateau: dict | None = None  # TinyHelen's early-stopping state: best eval loss, bad evals

    def metadata(self) -> dict:
        """`metadata.rounds` of a checkpoint."""
        out = {"round": self.round, "seed": self.seed, "history": list(self.history)}
        return out if self.plateau is None else {**out, "plateau": self.plateau}

    def items(self) -> dict[str, np.ndarray] | None:
        """The checkpoint's `rounds` array item (None in round 1)."""
        return None if self.selected_ids is None else {"selected_ids": self.selected_ids}
