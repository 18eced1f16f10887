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
