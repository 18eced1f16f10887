"""The configuration boundary: gin is parsed here, once, into one explicit `RunConfig`.

Library code never reads gin: the command line calls `parse(...)`, which returns a frozen
`RunConfig` holding every config of a run, and passes it (or its parts) down. Two runs with
different models can therefore live in one process (e.g. a parent and a child).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import inspect
import re
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import gin
from etils import epath

from tinylm_jax.config.cmc import CMCConfig
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.inherit import InheritConfig
from tinylm_jax.config.mesh import DEFAULT_RULES, MeshConfig, Rules
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.optimizer import OptimizerConfig
from tinylm_jax.config.rounds import RoundsConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import CheckpointConfig, TrainConfig
from tinylm_jax.errors import ConfigError


def _configs_dir() -> Path:
    """The named configs: `configs/` beside the package in a source checkout, or the copy the
    wheel ships inside the package (setup.cfg maps it there), so `tinylm` finds them anywhere."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if (checkout / "base.gin").exists():
        return checkout
    return Path(str(importlib.resources.files("tinylm_jax") / "configs"))


CONFIGS_DIR = _configs_dir()


T = TypeVar("T")


# The two gin names that are functions rather than config classes: the logical axis rule table
# and the MFU denominator's override.
@gin.configurable
def logical_axis_rules(rules: Rules = DEFAULT_RULES) -> Rules:
    """The gin-bound rule table (`logical_axis_rules.rules = (...)`)."""
    return tuple((name, tuple(mesh) if isinstance(mesh, list) else mesh) for name, mesh in rules)


@gin.configurable("peak_flops_per_device")
def peak_flops_override(override: float | None = None) -> float | None:
    """The gin binding `peak_flops_per_device.override`: FLOP/s replacing the looked-up peak."""
    return override


# The config dataclasses stay plain (constructing one never reads gin); gin knows them through
# these wrappers, which only `_from_gin` calls.
_GIN_CONFIGURABLES = {
    cls: gin.external_configurable(cls, name=cls.__name__)
    for cls in (
        ModelConfig,
        TrainConfig,
        OptimizerConfig,
        MeshConfig,
        DataConfig,
        CheckpointConfig,
        RoundsConfig,
        InheritConfig,
        CMCConfig,
    )
}


def from_gin(cls: type[T]) -> T:
    """A `cls` built from the parsed gin bindings (a plain instance, not gin's subclass)."""
    bound = _GIN_CONFIGURABLES[cls]()  # type: ignore[index]  # T is one of the keys
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # every key is a dataclass
    return cls(**{field.name: getattr(bound, field.name) for field in fields})


def _bind_steps_to_token_budget() -> None:
    """With `TrainConfig.train_tokens` bound and `num_steps` not, binds `num_steps = None` so
    the budget sets it (and the operative config records it so: a resumed run agrees)."""
    try:
        if gin.query_parameter("TrainConfig.train_tokens") is None:
            return
    except ValueError:  # not bound
        return
    try:
        gin.query_parameter("TrainConfig.num_steps")
    except ValueError:
        gin.bind_parameter("TrainConfig.num_steps", None)


def _from_gin() -> RunConfig:
    """Builds every config of a run from the parsed bindings (the only place that does)."""
    _bind_steps_to_token_budget()
    config = RunConfig(
        model=from_gin(ModelConfig),
        train=from_gin(TrainConfig),
        optimizer=from_gin(OptimizerConfig),
        mesh=from_gin(MeshConfig),
        data=from_gin(DataConfig),
        checkpoint=from_gin(CheckpointConfig),
        rounds=from_gin(RoundsConfig),
        inherit=from_gin(InheritConfig),
        cmc=from_gin(CMCConfig),
        rules=logical_axis_rules(),
        peak_flops=peak_flops_override(),
    )
    return config.replace(gin_config=gin.operative_config_str())


# Every gin name this package registers, with its fields. gin has no public API to list its
# registry, but the names are ours: the hints below read this table instead.
_GIN_FIELDS: dict[str, list[str]] = {
    **{cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in _GIN_CONFIGURABLES},
    "logical_axis_rules": list(inspect.signature(logical_axis_rules).parameters),
    "peak_flops_per_device": list(inspect.signature(peak_flops_override).parameters),
}


def _quote_hint(text: str | None) -> str:
    """For gin's `malformed node or string` (a bare word as a value): the quoted binding."""
    bare = re.fullmatch(r"\s*([\w.]+)\s*=\s*([A-Za-z_][\w.\-]*)\s*", text or "")
    if bare:
        return f" Strings need quotes: {bare.group(1)}='{bare.group(2)}'"
    return " A string value needs quotes, e.g. ModelConfig.dtype='bfloat16'"


def _explain(error: Exception, source: str, text: str | None = None) -> ConfigError:
    message = (str(error).splitlines() or [type(error).__name__])[0].rstrip(".")
    hint = ""
    if message.startswith("malformed node or string"):
        message, hint = "a value is not a Python literal", _quote_hint(text)
    unknown = re.search(r"No configurable matching '([\w.]+)'", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), list(_GIN_FIELDS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
    field = re.search(r"Configurable '(\w+)' doesn't have a parameter named '(\w+)'", message)
    if field:
        fields = _GIN_FIELDS.get(field.group(1), [])
        close = difflib.get_close_matches(field.group(2), fields, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Valid fields: {fields}"
    return ConfigError(f"Bad gin configuration in {source}: {message}.{hint}")


def parse(
    gin_files: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    workdir_config: str | Path | None = None,
) -> RunConfig:
    """The RunConfig of `workdir_config` (a run's saved config), then files, then
    `Name.field = value` params, each overriding the ones before.

    Files are looked up as given (relative to the current directory), then in the package's
    `configs/`; `include` statements inside them resolve the same way. Gin's global state is
    cleared first and holds these bindings afterwards; nothing but this module reads it.
    """
    gin.clear_config()
    for path in (Path.cwd(), CONFIGS_DIR):
        gin.add_config_file_search_path(str(path))
    if workdir_config is not None:
        # Read through epath: a run's saved config may live on gs://.
        text = epath.Path(workdir_config).read_text()
        _parse_one(lambda: gin.parse_config(text), str(workdir_config))
    for gin_file in gin_files:
        if not (Path(gin_file).exists() or (CONFIGS_DIR / gin_file).exists()):
            raise ConfigError(
                f"gin file {gin_file!r} not found (looked in {Path.cwd()} and "
                f"{CONFIGS_DIR}); pass an existing path to --gin_file"
            )
        _parse_one(lambda f=gin_file: gin.parse_config_file(_resolve(f)), gin_file)
    for param in gin_params:
        _parse_one(lambda p=param: gin.parse_config(p), f"--gin_param={param!r}", param)
    try:
        return _from_gin()
    except TypeError as error:  # e.g. a binding of the wrong type reaching a dataclass
        raise ConfigError(f"Bad gin configuration: {error}") from None


def _resolve(gin_file: str) -> str:
    return gin_file if Path(gin_file).exists() else str(CONFIGS_DIR / gin_file)


def _parse_one(parse_fn, source: str, text: str | None = None) -> None:
    try:
        parse_fn()
    except (ValueError, KeyError, SyntaxError, OSError, tokenize.TokenError) as error:
        raise _explain(error, source, text) from None
