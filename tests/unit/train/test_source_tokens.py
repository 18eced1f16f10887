"""Per-source token counts of a mixture run: added per step, saved and restored exactly."""

import numpy as np

from tinylm_jax.data import mixture
from tinylm_jax.train.hooks import Hooks, StepInfo
from tinylm_jax.train.source_tokens import SourceTokens, sum_over_processes


def _step(hooks: Hooks, step: int, ids) -> None:
    batch = {"ids": np.array(ids), "weights": np.ones((len(ids), 4), np.float32)}
    hooks.run(StepInfo(step, None, {}, batch_info=hooks.describe_batch(batch)))


def _counter() -> tuple[Hooks, SourceTokens]:
    hooks, drawn = Hooks(), SourceTokens(["prose", "code"], per_process_batches=False)
    hooks.add_part("source_tokens", drawn)
    hooks.add(drawn)
    hooks.restore({}, {})
    return hooks, drawn


def test_counts_accumulate_per_source_and_resume_from_the_saved_counts():
    code = mixture.SOURCE_STRIDE
    hooks, _ = _counter()
    _step(hooks, 1, [0, 1, code])
    _step(hooks, 2, [code + 1, code + 2, 3])
    assert hooks.tags() == {"tokens/prose": 12, "tokens/code": 12}
    saved, _ = hooks.save()
    _step(hooks, 3, [4, 5, 6])
    resumed, _ = _counter()
    resumed.restore(saved, {})
    _step(resumed, 3, [4, 5, 6])
    assert resumed.tags() == hooks.tags() == {"tokens/prose": 24, "tokens/code": 12}


def test_sums_over_processes_stay_exact_past_32_bits():
    counts = np.array([3 * 2**33 + 5, 7], np.int64)  # JAX gathers 32-bit integers
    assert sum_over_processes(counts).tolist() == counts.tolist()  # one process here
