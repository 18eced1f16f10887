"""lm-evaluation-harness on a workdir: the `tinylm` model of the harness's registry.

Importing this module registers it, after the harness's own models (whose lazy
registration runs only while the registry is empty). The installed harness (0.4.x) finds
models through its registry only, with no plugin entry point, so `tinylm lm-eval` and
`python -m tinylm_jax.cli.lm_eval` (the harness's own command line) import it first.

    lm_eval.simple_evaluate(model="tinylm", model_args="workdir=DIR,batch_size=8", ...)

Tokenization follows the harness's causal models with a BOS token (`add_bos_token=True` on
`--model hf`): contexts start with BOS, the context's trailing spaces move to the
continuation, and an empty context is BOS alone. Rolling log-likelihoods (perplexity tasks)
use the harness's disjoint windows of `max_seq_len` tokens, each after one token of context.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from tinylm_jax.errors import ConfigError

try:
    import lm_eval.models  # noqa: F401  (the harness's models, before ours joins the registry)
    from lm_eval import utils as lm_utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError as error:  # the optional [eval] extra
    raise ConfigError(
        f"lm-evaluation-harness is not installed ({error}); pip install 'tinylm_jax[eval]'"
    ) from None

from tinylm_jax.eval import harness
from tinylm_jax.eval.multiple_choice import encode_pair
from tinylm_jax.workdir.load import continuation_text, load_workdir_for_requests

log = logging.getLogger(__name__)

# The harness's default `max_gen_toks`; tiny models' contexts are short, so it is capped at
# half of `max_seq_len` to leave the prompt room.
DEFAULT_MAX_GEN_TOKS = 256


def _batch_size(value) -> int | None:
    """The harness passes `batch_size` as an int, a digit string or 'auto' (None here)."""
    if value is None or str(value).startswith("auto"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"batch_size must be an integer or 'auto'; got {value!r}") from None


@register_model("tinylm")
class TinyLM(TemplateLM):
    """A tinylm workdir's newest checkpoint, scored and sampled on its run's jitted steps.

    `workdir`: the run directory; `batch_size`: requests per batch (rounded up to the batch
    devices; default `TrainConfig.eval_batch_size`); `gin_param`: bindings applied over the
    workdir's config, separated by `;`. `device` and `max_batch_size` are accepted and
    ignored (JAX places the run on its mesh).
    """

    def __init__(
        self,
        workdir: str,
        batch_size: int | str | None = None,
        gin_param: str = "",
        max_batch_size: int | None = None,
        device: str | None = None,
        **unused,
    ) -> None:
        super().__init__()
        if unused:
            log.warning("tinylm ignores model_args %s", sorted(unused))
        params = [p for p in gin_param.split(";") if p.strip()]
        self.run, self.params, self.tokenizer = load_workdir_for_requests(
            workdir, params, _batch_size(batch_size)
        )
        self.max_length = self.run.config.model.max_seq_len

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        """`model_args` win over the harness's `--batch_size` (which defaults to 1)."""
        return cls.create_from_arg_obj(
            lm_utils.simple_parse_args_string(arg_string), additional_config
        )

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**extra, **arg_dict})

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.tokenizer.bos_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs):
        ids = self.tokenizer.encode(string)
        return ids if add_special_tokens is False else [self.tokenizer.bos_id] + ids

    def tok_decode(self, tokens: Sequence[int], **kwargs) -> str:
        return self.tokenizer.decode(list(tokens))

    def _encode_pair(self, context: str, continuation: str):
        """As `tinylm eval --task` encodes a choice, so the two agree request for request."""
        return encode_pair(self.tokenizer, context, continuation)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        pairs = [(list(context), list(continuation)) for _, context, continuation in requests]
        lls, greedy = harness.loglikelihoods_and_greedy(self.run, self.params, pairs)
        results = [(float(ll), bool(g)) for ll, g in zip(lls, greedy, strict=True)]
        for (key, _, _), result in zip(requests, results, strict=True):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for index, request in enumerate(requests):
            (text,) = request.args
            rolling = lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(text, add_special_tokens=False),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for window in map(lm_utils.make_disjoint_window, rolling):
                windows.append(window)
                owners.append(index)
        lls, _ = harness.loglikelihoods_and_greedy(self.run, self.params, windows)
        totals = [0.0] * len(requests)
        for owner, ll in zip(owners, lls, strict=True):
            totals[owner] += float(ll)
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            key = json.dumps(request.args[1], sort_keys=True, default=str)
            groups.setdefault(key, []).append(index)
        default_new = min(DEFAULT_MAX_GEN_TOKS, self.max_length // 2)
        out = [""] * len(requests)
        for indices in groups.values():
            sampling, stops = harness.sampling_for(requests[indices[0]].args[1], default_new)
            texts = harness.generate_until(
                self.run,
                self.params,
                self.tokenizer,
                [requests[i].args[0] for i in indices],
                sampling,
                stops,
                decode=lambda ids: continuation_text(self.tokenizer, ids),
            )
            for i, text in zip(indices, texts, strict=True):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out
