"""Reports: one writer of report.json and report.md for every kind of orchestration."""

import json

import matplotlib

from tinylm_jax.orchestration import report

matplotlib.use("Agg")


def test_tables_format_cells_and_write_both_files(tmp_path):
    lines = report.table(
        ["arm", "bits/byte", "note"], [["a", 1.234567, None], ["b", float("nan"), 3]]
    )
    assert lines == [
        "| arm | bits/byte | note |",
        "|---|---|---|",
        "| a | 1.235 |  |",
        "| b | nan | 3 |",
    ]
    from matplotlib.figure import Figure

    lines += report.figure(tmp_path / "out", "curves.png", Figure(), "curves")
    assert lines[-2:] == ["", "![curves](curves.png)"]
    assert (tmp_path / "out" / "curves.png").read_bytes().startswith(b"\x89PNG")
    markdown = report.write(tmp_path / "out", {"rows": 2}, ["# title", *lines])
    assert (tmp_path / "out" / "report.md").read_text() == markdown
    assert markdown.startswith("# title\n| arm |") and markdown.endswith("(curves.png)\n")
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"rows": 2}
