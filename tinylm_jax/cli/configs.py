"""`tinylm configs`: the named configs shipped with the package (models and experiments), each
with its parameter count and the first line of its header comment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The sub-folders of configs/ whose files each name a whole model (`include` resolves the rest).
GROUPS = ("models", "experiments")


def add_configs(commands) -> None:
    parser = commands.add_parser(
        "configs", help="list the named configs with parameter counts and one line each"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per config")
    parser.set_defaults(fn=cmd_configs)


def describe(path: Path) -> str:
    """A gin file's header comment up to its first ': ' or '. ' outside parentheses."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    text, depth = " ".join(header) + " ", 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in ".:" and text[i + 1] == " ":
            return text[:i]
    return text.strip()


def cmd_configs(args: argparse.Namespace) -> int:
    from typing import Any

    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.model.counting import model_stats

    rows: list[dict[str, Any]] = []
    for group in GROUPS:
        for path in sorted((config_lib.CONFIGS_DIR / group).glob("*.gin")):
            name = f"{group}/{path.name}"
            config = config_lib.parse([name])
            params = model_stats(config.model, min(8, config.model.max_seq_len)).total_params
            rows.append({"name": name, "params": params, "description": describe(path)})
    if args.json:
        print("\n".join(json.dumps(row) for row in rows))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['params']:>15,}  {row['description']}")
    print("\nUse one with --gin_file=NAME (e.g. tinylm train --gin_file=experiments/demo.gin).")
    return 0
