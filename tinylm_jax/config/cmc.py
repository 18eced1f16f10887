"""CMCConfig: how `tinylm cmc train` trains a delta model beside a frozen template, and how
its logit shift is applied (Cross-model Control, arXiv 2410.17599, Sec. 3)."""

from __future__ import annotations

import dataclasses
import math

from tinylm_jax.errors import ConfigError

NORMALIZATIONS = ("base", "add", "both")
FORGET_LOSSES = ("grad_diff", "grad_ascent")


@dataclasses.dataclass(frozen=True)
class CMCConfig:
    """`normalization`: how template (or user-model) logits z_t and delta logits z_d combine
    into z_t' + alpha * z_d' — 'base': log_softmax(z_t) + alpha * z_d (the paper's
    "basenormalization"); 'add': z_t + alpha * z_d; 'both': log_softmax(z_t) + alpha *
    log_softmax(z_d) (the public code's "normalization").
    `forget_loss` on `{"text", "forget"}` records: 'grad_diff' ascends the mean loss of the
    forget tokens and descends that of the retain tokens; 'grad_ascent' only ascends.
    `alpha`: the delta's weight, in training and the default at inference.
    """

    normalization: str = "base"
    forget_loss: str = "grad_diff"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"CMCConfig.normalization={self.normalization!r} is not one of {NORMALIZATIONS}"
            )
        if self.forget_loss not in FORGET_LOSSES:
            raise ConfigError(
                f"CMCConfig.forget_loss={self.forget_loss!r} is not one of {FORGET_LOSSES}"
            )
        check_alpha(self.alpha, "CMCConfig.alpha")


def check_alpha(alpha: float, source: str) -> float:
    """`alpha` if it is a finite number, else a ConfigError naming `source`."""
    if not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise ConfigError(f"{source}={alpha!r} must be a finite number (e.g. 1.0)")
    return float(alpha)
