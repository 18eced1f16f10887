"""Gin set-up: search paths, parsing with clear errors, and the operative config of a run."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import tokenize
from collections.abc import Sequence
from pathlib import Path

import gin

from tinylm_jax.model.config import ConfigError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

# Modules whose gin configurables must be registered before any config is parsed.
_CONFIGURABLE_MODULES = (
    "tinylm_jax.model.config",
    "tinylm_jax.parallel.mesh",
    "tinylm_jax.parallel.rules",
    "tinylm_jax.train.optimizer",
    "tinylm_jax.train.checkpoint",
    "tinylm_jax.train.metrics",
    "tinylm_jax.train.loop",
    "tinylm_jax.data.config",
)


def register_configurables() -> None:
    for module in _CONFIGURABLE_MODULES:
        importlib.import_module(module)


def _known_names() -> list[str]:
    # gin keeps its registry private; names only feed "did you mean" hints, so fail soft.
    try:
        return sorted({selector.split(".")[-1] for selector, _ in gin.config._REGISTRY.items()})
    except AttributeError:
        return []


def _explain(error: Exception, source: str) -> ConfigError:
    message = (str(error).splitlines() or [type(error).__name__])[0].rstrip(".")
    hint = ""
    unknown = re.search(r"No configurable matching '([\w.]+)'", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), _known_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
    field = re.search(r"Configurable '(\w+)' doesn't have a parameter named '(\w+)'", message)
    if field:
        configurable = gin.config._REGISTRY.get_match(field.group(1))
        fields = list(inspect.signature(configurable.wrapped).parameters) if configurable else []
        close = difflib.get_close_matches(field.group(2), fields, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Valid fields: {fields}"
    return ConfigError(f"Bad gin configuration in {source}: {message}.{hint}")


def parse(
    gin_files: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    workdir_config: Path | None = None,
) -> None:
    """Parses `workdir_config` (a run's saved config), then files, then `Name.field = value` params.

    Files are looked up as given, then relative to the current directory and the repo's
    `configs/`; `include` statements inside them resolve the same way.
    """
    register_configurables()
    gin.clear_config()
    for path in (Path.cwd(), CONFIGS_DIR):
        gin.add_config_file_search_path(str(path))
    if workdir_config is not None:
        _parse_one(lambda: gin.parse_config_file(str(workdir_config)), str(workdir_config))
    for gin_file in gin_files:
        if not (Path(gin_file).exists() or (CONFIGS_DIR / gin_file).exists()):
            raise ConfigError(
                f"gin file {gin_file!r} not found (looked in {Path.cwd()} and "
                f"{CONFIGS_DIR}); pass an existing path to --gin_file"
            )
        _parse_one(lambda f=gin_file: gin.parse_config_file(_resolve(f)), gin_file)
    for param in gin_params:
        _parse_one(lambda p=param: gin.parse_config(p), f"--gin_param={param!r}")


def _resolve(gin_file: str) -> str:
    return gin_file if Path(gin_file).exists() else str(CONFIGS_DIR / gin_file)


def _parse_one(parse_fn, source: str) -> None:
    try:
        parse_fn()
    except (ValueError, KeyError, SyntaxError, OSError, tokenize.TokenError) as error:
        raise _explain(error, source) from None


def write_operative_config(path: Path) -> None:
    path.write_text(gin.operative_config_str())
