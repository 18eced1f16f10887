"""Multiple-choice scoring with lm-eval-harness conventions (ARC, HellaSwag, PIQA style tasks).

Task format: JSONL, one example per line,
  {"context": "Question: ... Answer:", "choices": [" a", " b", ...], "answer": 1}
`context` and each choice are used verbatim (put the separating space at the start of the
choices, as the harness's `target_delimiter` does). Each choice is scored by the summed
log-likelihood of its tokens given BOS + context; `acc` takes the argmax, `acc_norm` the argmax
of log-likelihood per UTF-8 byte of the choice (the harness divides by `len(choice)`
characters, which is the same for ASCII). Like the harness, trailing spaces of the context move
to the continuation and the pair is tokenized whole, so the continuation's tokens are those of
the full text; too-long pairs keep their last `max_seq_len + 1` tokens.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import numpy as np

from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.errors import DataError

Request = tuple[list[int], list[int]]  # (context ids incl. BOS, continuation ids)


@dataclasses.dataclass(frozen=True)
class Example:
    context: str
    choices: tuple[str, ...]
    answer: int


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    examples: tuple[Example, ...]


def load_task(path: str | Path) -> Task:
    """Reads a JSONL task; a bad line fails naming the file, the line and what to fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task file {path} not found; pass a JSONL file to --task")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not JSON ({error})") from None
        if not isinstance(row, dict) or not {"context", "choices", "answer"} <= set(row):
            raise DataError(
                f'{where}: needs {{"context": str, "choices": [str, ...], "answer": int}}'
            )
        context, choices, answer = row["context"], row["choices"], row["answer"]
        if not isinstance(context, str) or not isinstance(choices, list) or len(choices) < 2:
            raise DataError(f"{where}: context must be a string and choices a list of >= 2")
        if not all(isinstance(c, str) and c for c in choices):
            raise DataError(f"{where}: every choice must be a non-empty string")
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise DataError(f"{where}: answer must be an index into choices, got {answer!r}")
        examples.append(Example(context, tuple(choices), answer))
    if not examples:
        raise DataError(f"{path} holds no examples")
    return Task(path.stem, tuple(examples))


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> Request:
    """lm-eval-harness `_encode_pair`, with BOS before the context.

    When the continuation's first token merges into the context's last one (nothing would be
    left to score), the two are encoded apart instead.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    if len(whole) <= len(context_ids):
        return [tokenizer.bos_id] + context_ids, tokenizer.encode(continuation)
    return [tokenizer.bos_id] + whole[: len(context_ids)], whole[len(context_ids) :]


def loglikelihoods(run: Run, params, requests: Sequence[Request]) -> np.ndarray:
    """Log-likelihood [R] of each request's continuation given its context, on the run's mesh.

    Requests are sorted by length and right-padded to a power-of-two bucket, so only a few
    shapes compile; each batch holds `TrainConfig.eval_batch_size` requests.
    """
    lls = np.zeros(len(requests))
    with run_context(run):
        for rows, batch in request_batches(run, requests):
            lls[rows] = jax.device_get(run.score_step(params, batch))[: len(rows)]
    return lls


def request_batches(
    run: Run, requests: Sequence[Request]
) -> Iterator[tuple[list[int], dict[str, jax.Array]]]:
    """(request indices, global batch) pairs covering `requests`, longest first.

    Each batch holds `TrainConfig.eval_batch_size` rows right-padded to a power-of-two length
    (at most `max_seq_len`); `weights` mark each request's continuation, and a request longer
    than `max_seq_len + 1` tokens keeps its last ones. Call it inside `run_context(run)`.
    """
    max_len = run.config.model.max_seq_len
    batch = run.config.train.resolved_eval_batch_size
    for _, continuation in requests:
        if not continuation or len(continuation) > max_len:
            raise DataError(
                f"a continuation of {len(continuation)} tokens cannot be scored with "
                f"ModelConfig.max_seq_len={max_len}"
            )
    sequences = [(c + x)[-(max_len + 1) :] for c, x in requests]
    order = sorted(range(len(requests)), key=lambda i: -len(sequences[i]))
    process_rows = batch // jax.process_count()
    first_row = jax.process_index() * process_rows
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        length = min(max_len, 1 << (len(sequences[rows[0]]) - 2).bit_length())
        host = {
            k: np.zeros((batch, length), np.int32) for k in ("inputs", "targets", "segment_ids")
        }
        host["weights"] = np.zeros((batch, length), np.float32)
        host["positions"] = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length))
        for r, i in enumerate(rows):
            seq, n = sequences[i], len(requests[i][1])
            host["inputs"][r, : len(seq) - 1] = seq[:-1]
            host["targets"][r, : len(seq) - 1] = seq[1:]
            host["segment_ids"][r, : len(seq) - 1] = 1
            host["weights"][r, len(seq) - 1 - n : len(seq) - 1] = 1.0
        local = {k: v[first_row : first_row + process_rows] for k, v in host.items()}
        yield rows, run.eval_batch(local)


def score_task(run: Run, params, tokenizer: Tokenizer, task: Task) -> dict[str, float]:
    """`acc`, `acc_norm` (per-byte) and the number of examples `n` of one task."""
    requests: list[Request] = []
    spans: list[tuple[int, int]] = []
    for number, example in enumerate(task.examples, 1):
        spans.append((len(requests), len(example.choices)))
        for choice in example.choices:
            requests.append(encode_pair(tokenizer, example.context, choice))
            if len(requests[-1][1]) > run.config.model.max_seq_len:
                raise DataError(
                    f"task {task.name}, example {number}: choice {choice[:40]!r} is "
                    f"{len(requests[-1][1])} tokens, more than ModelConfig.max_seq_len="
                    f"{run.config.model.max_seq_len}"
                )
    lls = loglikelihoods(run, params, requests)
    correct = correct_norm = 0
    for example, (start, count) in zip(task.examples, spans, strict=True):
        ll = lls[start : start + count]
        byte_lengths = np.array([len(c.encode("utf-8")) for c in example.choices], np.float64)
        correct += int(np.argmax(ll)) == example.answer
        correct_norm += int(np.argmax(ll / byte_lengths)) == example.answer
    n = len(task.examples)
    return {"acc": correct / n, "acc_norm": correct_norm / n, "n": n}
