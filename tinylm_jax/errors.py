"""Errors a user can cause; the command line turns them into exit status 2 and one message."""


class ConfigError(ValueError):
    """A configuration value a user set cannot work; the message says which and how to fix it."""


class DataError(ValueError):
    """Bad user input to the data pipeline (paths, corpus, tokenizer, config).

    Messages name the offending thing and say how to fix it.
    """


class StorageError(OSError):
    """Writing a run's files failed (disk full, permission denied, storage unavailable).

    Messages name the path, the error and what is still intact.
    """


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Raises a ConfigError naming the pip command when optional `module` is not installed.

    Called at a command's start, so a missing extra fails before any expensive work."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"{purpose} needs {module}, which is not installed; install the [{extra}] extra: "
            f"pip install 'tinylm_jax[{extra}]'"
        )
