"""Reports of many runs: `report.json` (the numbers) and `report.md` (tables and figures)
in the orchestration root, written the same way by grid sweeps, budgeted sweeps and the
ladder, so every report reads alike and can be rebuilt from the workdirs at any time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from etils import epath

from tinylm_jax.files import write_atomically

JSON_FILE = "report.json"
MARKDOWN_FILE = "report.md"


def cell(value: object, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant digits, None empty, the rest as str."""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table's lines; cells go through `cell` (pre-format them as strings for
    anything else)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def figure(root: epath.PathLike, name: str, fig, alt: str) -> list[str]:
    """Saves a matplotlib figure as ROOT/NAME; the Markdown lines that show it."""
    from tinylm_jax.orchestration import plot

    plot.save(fig, epath.Path(root) / name)
    return ["", f"![{alt}]({name})"]


def write(root: epath.PathLike, data: object, lines: Sequence[str]) -> str:
    """Writes ROOT/report.json (`data`) and ROOT/report.md (`lines`); returns the Markdown."""
    root = epath.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    markdown = "\n".join(lines) + "\n"
    write_atomically(root / JSON_FILE, json.dumps(data, indent=1) + "\n")
    write_atomically(root / MARKDOWN_FILE, markdown)
    return markdown
