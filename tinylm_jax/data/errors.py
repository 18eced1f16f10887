"""Errors a user of the data pipeline can cause."""


class DataError(ValueError):
    """Bad user input to the data pipeline (paths, corpus, tokenizer, config).

    Messages name the offending thing and say how to fix it.
    """
