"""Every configuration schema of a run (frozen dataclasses) and, in `config.gin`, the one place
that parses gin into a `RunConfig`. Only the command line and the workdir loader parse."""
