"""`python -m tinylm_jax.cli ...` runs the `tinylm` command line."""

import sys

from tinylm_jax.cli.main import main

sys.exit(main())
