"""The `tinylm` command line."""
