"""A trained workdir as a whole: loading its run, evaluating, sampling and scoring it."""
