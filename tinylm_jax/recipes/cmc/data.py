"""`tinylm cmc train`'s records: instruction pairs or unlearning texts, one JSON object a line,
encoded into fixed-length rows, and the batch of each step as a pure function of the step
(so a resumed run sees exactly the batches an uninterrupted one would).

`{"prompt": P, "response": R}`: the loss is on R's tokens and the EOS after it (as in the
paper's instruction tuning, arXiv 2410.17599, Sec. 4.1). `{"text": T, "forget": true|false}`:
every token of T, ascended on a forget record and descended on a retain one (Sec. 4.2).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from etils import epath

from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Rows:
    """Encoded records: `tokens_NS` (S = seq_len + 1, BOS first, pad after), `weights_NS`
    (1 where token s is a target of the loss; column 0 is never one) and `forget_N`."""

    tokens_NS: np.ndarray
    weights_NS: np.ndarray
    forget_N: np.ndarray

    def __len__(self) -> int:
        return len(self.forget_N)


def load_records(path: epath.PathLike) -> list[dict]:
    """The records of a JSONL file, each checked to be an instruction pair or a text."""
    path = epath.Path(path)
    if not path.exists():
        raise DataError(f"--data={path} not found; pass a JSONL file of records")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not JSON ({error.msg})") from None
        records.append(_checked(record, f"{path}:{number}"))
    if not records:
        raise DataError(
            f"{path} holds no records; write one JSON object a line, "
            '{"prompt": ..., "response": ...} or {"text": ..., "forget": true|false}'
        )
    return records


def _checked(record: object, where: str) -> dict:
    if isinstance(record, dict):
        if isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str):
            return {"prompt": record["prompt"], "response": record["response"], "forget": False}
        if isinstance(record.get("text"), str):
            forget = record.get("forget", False)
            if not isinstance(forget, bool):
                raise DataError(f"{where}: 'forget' must be true or false, got {forget!r}")
            return {"text": record["text"], "forget": forget}
    raise DataError(
        f"{where}: a record needs string fields 'prompt' and 'response' (instruction tuning) or "
        f"'text' with an optional boolean 'forget' (unlearning); got {str(record)[:80]}"
    )


def encode_rows(records: list[dict], tokenizer: Tokenizer, seq_len: int) -> Rows:
    """Each record as one row of `seq_len + 1` tokens: BOS, text, EOS, cut or padded."""
    S = seq_len + 1
    tokens_NS = np.full((len(records), S), tokenizer.pad_id, np.int32)
    weights_NS = np.zeros((len(records), S), np.float32)
    for row, record in enumerate(records):
        if "prompt" in record:
            prompt = [tokenizer.bos_id] + tokenizer.encode(record["prompt"])
            target = tokenizer.encode(record["response"]) + [tokenizer.eos_id]
        else:
            prompt = [tokenizer.bos_id]
            target = tokenizer.encode(record["text"]) + [tokenizer.eos_id]
        ids = (prompt + target)[:S]
        tokens_NS[row, : len(ids)] = ids
        weights_NS[row, len(prompt) : len(ids)] = 1.0
    if not weights_NS.any():
        raise DataError(
            f"no record keeps a target token within TrainConfig.seq_len={seq_len}; "
            "shorten the prompts or raise seq_len"
        )
    forget_N = np.array([r["forget"] for r in records], bool)
    return Rows(tokens_NS, weights_NS, forget_N)


def batch_at(rows: Rows, step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Step `step`'s batch (0-based): rows taken in order from a fresh permutation of all rows
    each epoch, seeded by (`seed`, epoch); a pure function of the step, so resuming needs no
    iterator state."""
    N = len(rows)
    index = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, offsets = np.divmod(index, N)
    picks = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        order = np.random.default_rng([seed, int(epoch)]).permutation(N)
        picks[epochs == epoch] = order[offsets[epochs == epoch]]
    tokens_BS, weights_BS = rows.tokens_NS[picks], rows.weights_NS[picks]
    B, L = batch_size, tokens_BS.shape[1] - 1
    return {
        "inputs": tokens_BS[:, :-1],
        "targets": tokens_BS[:, 1:],
        "positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)).copy(),
        # One document a row: padding only follows it, and causal attention keeps it out.
        "segment_ids": np.ones((B, L), np.int32),
        "weights": weights_BS[:, 1:],
        "forget": np.broadcast_to(rows.forget_N[picks][:, None], (B, L)).astype(np.float32),
    }
