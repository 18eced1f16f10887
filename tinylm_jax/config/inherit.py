"""InheritConfig: how `tinylm inherit` builds a child from a larger parent (arXiv 2402.02791,
Sec. 3.3, PanGu-pi Pro parameter inheritance)."""

from __future__ import annotations

import dataclasses

from tinylm_jax.errors import ConfigError

LAYER_SELECTIONS = ("ends", "uniform", "first", "block_influence", "explicit")
WIDTH_METRICS = (
    "random",
    "l1",
    "l2",
    "taylor",
    "taylor_pooled",
    "activation",
    "learnable_mask",
    "learnable_mask_joint",
)


@dataclasses.dataclass(frozen=True)
class InheritConfig:
    """Depth: `layer_selection` picks the child's `n_layers` parent layers ('ends': the first
    and last ones, the paper's finding; 'uniform': evenly spaced; 'first'; 'block_influence':
    ShortGPT's 1 - cos(h_in, h_out), arXiv 2403.03853, Sec. 3; 'explicit': `layers`).
    Width: `width_metric` ranks hidden channels, heads / kv groups and FFN neurons.
    `calibration_batches` training batches feed 'taylor' (LLM-Pruner's: |Σ w·g| per weight
    matrix, summed), 'taylor_pooled' (|Σ w·g| over all of a unit's weights), 'activation' and
    'block_influence'; 'learnable_mask' trains hard-concrete masks for `mask_steps` steps at
    `mask_learning_rate` with the parent frozen; 'learnable_mask_joint' trains the parent's
    weights with them (at `mask_weight_learning_rate`), as Sheared-LLaMA does
    (arXiv 2310.06694, Sec. 2.1), and the child inherits those weights. `id_map`: a `tinylm
    tokenizer compress` output directory whose id map carries the parent's embedding / head
    rows to the child's token ids. `seed` seeds the 'random' metric, the mask noise and the
    calibration batch order.
    """

    layer_selection: str = "ends"
    layers: tuple[int, ...] | None = None
    width_metric: str = "l2"
    calibration_batches: int = 8
    mask_steps: int = 100
    mask_learning_rate: float = 0.1
    mask_weight_learning_rate: float = 1e-4
    id_map: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers is not None:  # gin binds lists; keep the config hashable
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        if self.layer_selection not in LAYER_SELECTIONS:
            raise ConfigError(
                f"InheritConfig.layer_selection={self.layer_selection!r} is not one of "
                f"{LAYER_SELECTIONS}"
            )
        if self.width_metric not in WIDTH_METRICS:
            raise ConfigError(
                f"InheritConfig.width_metric={self.width_metric!r} is not one of {WIDTH_METRICS}"
            )
        if (self.layer_selection == "explicit") != (self.layers is not None):
            raise ConfigError(
                "InheritConfig.layers (parent layer indices) goes with "
                "InheritConfig.layer_selection = 'explicit', and only with it"
            )
        for name in ("calibration_batches", "mask_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"InheritConfig.{name} must be positive, got {getattr(self, name)}"
                )
        if self.mask_learning_rate <= 0 or self.mask_weight_learning_rate <= 0:
            raise ConfigError(
                "InheritConfig.mask_learning_rate and mask_weight_learning_rate must be "
                f"positive, got {self.mask_learning_rate}, {self.mask_weight_learning_rate}"
            )

    @property
    def needs_data(self) -> bool:
        """Whether importance needs calibration batches of the training split."""
        data_metrics = (
            "taylor",
            "taylor_pooled",
            "activation",
            "learnable_mask",
            "learnable_mask_joint",
        )
        return self.width_metric in data_metrics or self.layer_selection == "block_influence"
