"""`tinylm inherit`: a step-0 child workdir from a larger trained parent (PanGu-π Pro layer
selection and width pruning)."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_inherit(commands) -> None:
    parser = commands.add_parser(
        "inherit",
        help="a step-0 child workdir from a larger trained parent (layer selection, pruning)",
    )
    parser.add_argument("--parent", required=True, help="workdir of `train` or `import-hf`")
    parser.add_argument("--workdir", required=True, help="new child workdir to write")
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    parser.set_defaults(fn=cmd_inherit)


def cmd_inherit(args: argparse.Namespace) -> int:
    common.initialize_distributed(args)
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.workdir.load import config_path

    # The parent's model from its own config.gin; the child's run is parsed last (from flags).
    parent = config_lib.parse(workdir_config=config_path(args.parent)).model
    config = common.run_config(args)
    from tinylm_jax.recipes.pangu.inherit import inherit

    print(json.dumps(inherit(config, parent, args.parent, args.workdir), indent=1))
    return 0
