"""`--delta=DELTA [--alpha=A] [--token_map=FILE]` on `sample`, `eval` and `score`: a delta
workdir written by `tinylm cmc train`, checked before any weights load, then loaded on the
user model's mesh (Cross-model Control, arXiv 2410.17599, Sec. 3). A delta with another
tokenizer than the user model's gets a PM-MinED token map: `--token_map`, or one built once and
cached in the delta's workdir (`layout.token_map_file`, keyed by both fingerprints)."""

from __future__ import annotations

import dataclasses
import json

from etils import epath

from tinylm_jax import layout
from tinylm_jax.config import gin as config_lib
from tinylm_jax.config.cmc import check_alpha
from tinylm_jax.config.run import RunConfig
from tinylm_jax.data.cross_vocab import CrossVocab
from tinylm_jax.data.token_map import cached_map, read_map
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.engine.combined import with_delta
from tinylm_jax.engine.run import Run
from tinylm_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class DeltaFlags:
    """The flags as given: the delta's workdir, `alpha` (None: the delta's `CMCConfig.alpha`)
    and a token map file (None: built when the tokenizers differ)."""

    workdir: str
    alpha: float | None = None
    token_map: str | None = None


@dataclasses.dataclass(frozen=True)
class CheckedDelta:
    """A delta whose files were checked: its config, tokenizer, the alpha to use and, when its
    tokenizer is not the user model's, the tokenizers and token map between them."""

    workdir: str
    config: RunConfig
    tokenizer: Tokenizer
    alpha: float
    cross: CrossVocab | None = None


def check_delta(flags: DeltaFlags, user_tokenizer: Tokenizer) -> CheckedDelta:
    """Reads and checks the delta's config, tokenizer and claims; loads no weights."""
    from tinylm_jax.workdir.load import config_path, tokenizer_of

    config = config_lib.parse(workdir_config=config_path(flags.workdir))
    alpha = check_alpha(config.cmc.alpha if flags.alpha is None else flags.alpha, "--alpha")
    tokenizer = tokenizer_of(flags.workdir)
    claims = layout.cmc_file(flags.workdir)
    if claims.exists():
        claimed = json.loads(claims.read_text())["tokenizer_fingerprint"]
        if claimed != tokenizer.fingerprint:
            raise DataError(
                f"{flags.workdir} was trained beside a template whose tokenizer differs from "
                f"the one in {flags.workdir} (fingerprints {claimed[:16]} vs "
                f"{tokenizer.fingerprint[:16]}); restore that workdir's tokenizer files"
            )
    if config.model.output_head != "tokens":
        raise ConfigError(f"--delta={flags.workdir} needs ModelConfig.output_head = 'tokens'")
    cross = None
    if tokenizer.fingerprint != user_tokenizer.fingerprint:
        if flags.token_map is not None:  # fingerprints checked here
            token_map = read_map(flags.token_map, user_tokenizer, tokenizer)
        else:
            entry = layout.token_map_file(
                flags.workdir, user_tokenizer.fingerprint, tokenizer.fingerprint
            )
            token_map = cached_map(entry, user_tokenizer, tokenizer)
        cross = CrossVocab(user_tokenizer, tokenizer, token_map)
    return CheckedDelta(flags.workdir, config, tokenizer, alpha, cross)


def delta_config_on(delta: RunConfig, user: RunConfig) -> RunConfig:
    """The delta's model on the user run's mesh, rules and batch shape."""
    return delta.replace(mesh=user.mesh, train=user.train, rounds=user.rounds)


@dataclasses.dataclass(frozen=True)
class AppliedDelta:
    """A loaded delta: its own run (whose `CMCConfig` holds the normalization and the alpha in
    use) and, for another tokenizer, the tokenizers and token map."""

    run: Run
    cross: CrossVocab | None


def apply_delta(run: Run, params, delta: CheckedDelta) -> tuple[Run, tuple, AppliedDelta]:
    """(run whose eval and score steps combine the logits, (params, delta params), the loaded
    delta) with the delta loaded on `run`'s mesh."""
    from tinylm_jax.workdir.load import load_workdir

    if delta.cross is None and delta.config.model.vocab_size != run.config.model.vocab_size:
        raise ConfigError(
            f"--delta={delta.workdir} predicts {delta.config.model.vocab_size} tokens, the "
            f"model {run.config.model.vocab_size}"
        )
    config = delta_config_on(delta.config, run.config)
    config = config.replace(cmc=dataclasses.replace(config.cmc, alpha=delta.alpha))
    delta_run, delta_params, _ = load_workdir(config, epath.Path(delta.workdir))
    combined = with_delta(
        run, delta_run.model, delta.config.cmc.normalization, delta.alpha, delta.cross
    )
    return combined, (params, delta_params), AppliedDelta(delta_run, delta.cross)
