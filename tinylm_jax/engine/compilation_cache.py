"""JAX's persistent compilation cache, on by default, so a second `tinylm sample`, `eval`,
`score`, `bench` or sweep arm of the same shapes loads its executables instead of compiling.

Where it lives, first match wins:
  1. `$TINYLM_COMPILATION_CACHE` (a directory, or 'off');
  2. `TrainConfig.compilation_cache` (a directory, or 'off');
  3. `$JAX_COMPILATION_CACHE_DIR` when set: JAX's own setting is left alone (the test suite
     sets it to a fresh per-run cache);
  4. `<data dir>/jax_compilation_cache` (`$TINYLM_DATA_DIR` or ~/.cache/tinylm_jax).
"""

from __future__ import annotations

import logging
import os
import pathlib

import jax

from tinylm_jax.config.data import DataConfig, resolve_data_dir
from tinylm_jax.config.train import TrainConfig

ENV = "TINYLM_COMPILATION_CACHE"
OFF = "off"
CACHE_SUBDIR = "jax_compilation_cache"
# JAX caches only programs that took at least this long to compile (its default is 1 s);
# on CPU the eval and sampling programs of small models compile in well under a second each,
# and together they are most of a short command's wall time.
MIN_COMPILE_TIME_S = 0.1


def cache_dir(train: TrainConfig, data: DataConfig) -> str | None:
    """The directory the cache will use (None: off, or left to `$JAX_COMPILATION_CACHE_DIR`)."""
    chosen = os.environ.get(ENV) or train.compilation_cache
    if chosen:
        return None if chosen.strip().lower() == OFF else chosen
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return str(resolve_data_dir(data) / CACHE_SUBDIR)


def enable(train: TrainConfig, data: DataConfig) -> str | None:
    """Points JAX's persistent compilation cache at `cache_dir(...)` (before anything is
    compiled); 'off' disables it. Returns the directory in use, or None when off."""
    chosen = os.environ.get(ENV) or train.compilation_cache
    if chosen and chosen.strip().lower() == OFF:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory = cache_dir(train, data)
    if directory is None:  # JAX's own $JAX_COMPILATION_CACHE_DIR is in charge
        return os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if "://" not in directory:
        try:
            pathlib.Path(directory).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a cache is an optimization: never fail a run over it
            logging.warning("compilation cache off: cannot create %s (%s)", directory, error)
            return None
        directory = str(pathlib.Path(directory).expanduser())
    jax.config.update("jax_compilation_cache_dir", directory)
    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    return directory
