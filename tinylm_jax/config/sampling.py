"""Text generation settings (`tinylm sample`'s flags)."""

from __future__ import annotations

import dataclasses

from tinylm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Defaults suit small models: greedy decoding (temperature 0) makes them loop, so sample
    at temperature 0.8 from the top-p 0.95 nucleus, with a fixed seed for reproducible text."""

    max_new_tokens: int = 64
    temperature: float = 0.8  # 0 is greedy
    top_k: int = 0  # 0 keeps all
    top_p: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature >= 0,
            "top_k": self.top_k >= 0,
            "top_p": 0 < self.top_p <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"--{name}={getattr(self, name)} is out of range (max_new_tokens >= 1, "
                    "temperature >= 0, top_k >= 0, 0 < top_p <= 1)"
                )
