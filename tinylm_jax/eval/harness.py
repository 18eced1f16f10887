"""The three request types of lm-evaluation-harness on the run's jitted steps, without the
harness itself (the adapter in `tinylm_jax.interop.lm_harness` turns its `Instance`s into
these calls): log-likelihoods with the harness's `is_greedy`, and greedy or sampled
generation cut at stop strings.

Requests are batched `TrainConfig.eval_batch_size` at a time with power-of-two lengths
(`multiple_choice.request_batches`, and the prompt width here), so a whole task compiles a
few shapes, not one per request.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from tinylm_jax.config.sampling import SamplingConfig
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.engine.run import Run, run_context
from tinylm_jax.engine.step import Batch, score_step
from tinylm_jax.eval.generate import generate
from tinylm_jax.eval.multiple_choice import Request, request_batches
from tinylm_jax.model.byte_level import token_log_probs


@functools.partial(jax.jit, static_argnames="model")
def _greedy_score_step(params: dict, batch: Batch, *, model: nn.Module):
    """(summed log-likelihood [B], whether every weighted target is the argmax [B])."""
    ll_B = score_step(params, batch, model=model)
    outputs, _ = model.apply(
        {"params": params}, batch["inputs"], batch["positions"], batch["segment_ids"]
    )
    if model.config.output_head == "bytes":  # score every token by its byte string
        B, L = batch["inputs"].shape
        flat = token_log_probs(
            outputs.reshape((B * L,) + outputs.shape[2:]),
            model.token_bytes,
            model.config.byte_variant,
        )
        outputs = flat.reshape(B, L, -1)
    hit_BL = jnp.argmax(outputs, axis=-1) == batch["targets"]
    greedy_B = jnp.all(hit_BL | (batch["weights"] == 0), axis=1)
    # Replicated, so every process can read every row.
    return jax.lax.with_sharding_constraint((ll_B, greedy_B), PartitionSpec())


def loglikelihoods_and_greedy(
    run: Run, params, requests: Sequence[Request]
) -> tuple[np.ndarray, np.ndarray]:
    """Per request: the continuation's summed log-likelihood given its context [R], and
    whether greedy decoding would produce exactly the continuation [R] (the harness's
    `is_greedy`, its `acc` on tasks such as LAMBADA)."""
    lls, greedy = np.zeros(len(requests)), np.zeros(len(requests), bool)
    with run_context(run):
        for rows, batch in request_batches(run, requests):
            ll_B, greedy_B = jax.device_get(_greedy_score_step(params, batch, model=run.model))
            lls[rows], greedy[rows] = ll_B[: len(rows)], greedy_B[: len(rows)]
    return lls, greedy


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string (the harness's `until`)."""
    cut = min([text.find(s) for s in stops if s and s in text] + [len(text)])
    return text[:cut]


def generate_until(
    run: Run,
    params,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    stops: Sequence[str],
    decode: Callable[[list[int]], str],
) -> list[str]:
    """The completion of each prompt (BOS + its tokens, keeping the last ones when the prompt
    and `sampling.max_new_tokens` exceed `max_seq_len`, as the harness truncates), decoded by
    `decode` and cut at the first stop string. Batches of `eval_batch_size` prompts, padded to
    a power-of-two width, so a task compiles a few shapes."""
    max_len = run.config.model.max_seq_len
    room = max_len - sampling.max_new_tokens
    if room < 1:
        raise ValueError(
            f"max_gen_toks={sampling.max_new_tokens} leaves no room for a prompt within "
            f"ModelConfig.max_seq_len={max_len}"
        )
    encoded = [([tokenizer.bos_id] + tokenizer.encode(p))[-room:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    batch = run.config.train.resolved_eval_batch_size
    host_params = jax.device_get(params)  # decoding is small: one host copy, as `sample` does
    texts = [""] * len(prompts)
    with run_context(run):
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            chunk = [encoded[i] for i in rows]
            chunk += [chunk[0]] * (batch - len(chunk))  # one batch shape for every chunk
            width = min(room, 1 << (len(chunk[0]) - 1).bit_length())
            completions = generate(
                run.model,
                host_params,
                chunk,
                sampling,
                eos_id=tokenizer.eos_id,
                pad_id=tokenizer.pad_id,
                prompt_width=width,
            )
            for i, ids in zip(rows, completions, strict=False):
                texts[i] = cut_at_stops(decode(ids), stops)
    return texts


def sampling_for(gen_kwargs: dict, default_max_new_tokens: int) -> tuple[SamplingConfig, list]:
    """(SamplingConfig, stop strings) of the harness's `gen_kwargs` (`until`, `max_gen_toks`,
    `do_sample`, `temperature`, `top_k`, `top_p`, `seed`); unsampled means greedy."""
    kwargs = dict(gen_kwargs)
    until = kwargs.pop("until", None) or []
    stops = [until] if isinstance(until, str) else list(until)
    max_new = int(kwargs.pop("max_gen_toks", default_max_new_tokens))
    sampled = kwargs.pop("do_sample", False) and float(kwargs.get("temperature", 1.0)) > 0
    config = SamplingConfig(max_new_tokens=max_new, temperature=0.0)
    if sampled:
        fields = {f.name for f in dataclasses.fields(SamplingConfig)}
        chosen = {"temperature": 1.0, **{k: v for k, v in kwargs.items() if k in fields}}
        config = dataclasses.replace(config, **chosen)
    return config, stops
