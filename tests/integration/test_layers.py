"""The layer map (setup.cfg's import-linter contract) holds, and an upward import breaks it."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under `root`, with the repository's contract."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command;"
            " sys.exit(lint_imports_command())",
            "--config",
            str(root / "setup.cfg"),
            "--no-cache",
        ],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_contract_holds_and_fails_on_a_planted_upward_import(tmp_path):
    shutil.copytree(REPO / "tinylm_jax", tmp_path / "tinylm_jax")
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    kept = _lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    # The data layer reaching up into a recipe is the kind of knot the contract exists for.
    loader = tmp_path / "tinylm_jax" / "data" / "loader.py"
    loader.write_text(loader.read_text() + "\nfrom tinylm_jax.recipes.pangu import pruning\n")
    broken = _lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "tinylm_jax.data is not allowed to import tinylm_jax.recipes" in broken.stdout
