"""`RunConfig`: every setting of one run, passed down explicitly from the command line."""

from __future__ import annotations

import dataclasses

from tinylm_jax.config.cmc import CMCConfig
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.inherit import InheritConfig
from tinylm_jax.config.mesh import DEFAULT_RULES, MeshConfig, Rules
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.optimizer import OptimizerConfig
from tinylm_jax.config.rounds import RoundsConfig
from tinylm_jax.config.train import CheckpointConfig, TrainConfig
from tinylm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of one run; unset parts take their defaults.

    `gin_config` is the operative gin text it was parsed from (written to `WORKDIR/config.gin`
    and into checkpoints); `peak_flops` overrides the MFU denominator (None: looked up or
    measured).
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    rounds: RoundsConfig = dataclasses.field(default_factory=RoundsConfig)
    inherit: InheritConfig = dataclasses.field(default_factory=InheritConfig)
    cmc: CMCConfig = dataclasses.field(default_factory=CMCConfig)
    rules: Rules = DEFAULT_RULES
    peak_flops: float | None = None
    gin_config: str = ""

    def __post_init__(self) -> None:
        if self.train.seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"TrainConfig.seq_len={self.train.seq_len} exceeds "
                f"ModelConfig.max_seq_len={self.model.max_seq_len}"
            )
        self.rounds.steps_per_round(self.train.num_steps)  # raises unless they add up

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)
