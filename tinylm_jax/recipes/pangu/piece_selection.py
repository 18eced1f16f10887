"""Which pieces a compressed tokenizer keeps: the target checks, the frequency-ordered
fill, and the BPE merge replay that makes a kept piece bring its intermediates (shared by
the SentencePiece and tokenizer.json backends; see `tokenizer_compression`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tinylm_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Compression:
    """A pruned model and how it relates to the big one."""

    model: bytes  # the pruned tokenizer: a serialized ModelProto, or tokenizer.json
    id_map: np.ndarray  # int32 [V_old]: new id, or -1 for a deleted piece
    coverage: float  # fraction of counted corpus tokens whose piece is kept
    mandatory: int  # pieces kept regardless of frequency
    bpe_intermediates: int  # pieces kept only because a kept BPE piece merges through them

    @property
    def vocab_size(self) -> int:
        return int((self.id_map >= 0).sum())


def merge_chain(text: str, priority) -> list[str] | None:
    """The symbols made while greedily merging `text`'s characters, in order: repeatedly merge
    the adjacent pair of lowest `priority(left, right)` (None: not a merge; leftmost on ties).
    None when the merges do not end in `text` itself (it is unreachable)."""
    symbols = list(text)
    made = []
    while len(symbols) > 1:
        best_priority, best = None, -1
        for k in range(len(symbols) - 1):
            value = priority(symbols[k], symbols[k + 1])
            if value is not None and (best_priority is None or value < best_priority):
                best_priority, best = value, k
        if best < 0:
            break
        symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        made.append(symbols[best])
    return made if symbols == [text] else None


def check_target(
    mandatory: int, size: int, counts: np.ndarray, vocab_size: int | None, coverage: float | None
) -> None:
    if (vocab_size is None) == (coverage is None):
        raise DataError("Give exactly one of --vocab_size and --coverage.")
    if counts.shape != (size,):
        raise DataError(f"Token counts have shape {counts.shape}; the tokenizer has {size} pieces.")
    if vocab_size is not None and not mandatory <= vocab_size <= size:
        raise DataError(
            f"--vocab_size={vocab_size} is out of range: the tokenizer has {size} pieces, "
            f"{mandatory} of them special, byte or whitespace pieces that are always "
            f"kept; choose a size in [{mandatory}, {size}]."
        )
    if coverage is not None and not 0.0 < coverage <= 1.0:
        raise DataError(f"--coverage must be in (0, 1]; got {coverage}.")
    if int(counts.sum()) == 0:
        raise DataError("The corpus produced no tokens; check DataConfig (dataset, paths).")


def keep_frequent(
    kept: np.ndarray,
    order: np.ndarray,
    counts: np.ndarray,
    needs: Callable[[int], list[int] | None],
    vocab_size: int | None,
    coverage: float | None,
) -> int:
    """Adds pieces to `kept` (in place) in `order` until the target is met; returns the
    intermediates added. `needs(i)` is what keeping piece i takes (i and the merge
    intermediates it is built through), or None when i is unreachable."""
    total = int(counts.sum())
    n_kept, covered, intermediates = int(kept.sum()), int(counts[kept].sum()), 0
    for i in order:
        if vocab_size is not None and n_kept == vocab_size:
            break
        if coverage is not None and covered >= coverage * total:
            break
        if kept[i]:
            continue
        needed = needs(int(i))
        if needed is None:
            continue
        add = [j for j in dict.fromkeys(needed) if not kept[j]]
        if vocab_size is not None and n_kept + len(add) > vocab_size:
            continue  # A BPE piece whose missing intermediates do not fit; smaller ones may.
        kept[add] = True
        n_kept += len(add)
        covered += int(counts[add].sum())
        intermediates += len(add) - 1
    if vocab_size is not None and n_kept != vocab_size:
        raise DataError(
            f"Only {n_kept} pieces of the BPE tokenizer are reachable by merges; choose "
            f"--vocab_size <= {n_kept}."
        )
    return intermediates
