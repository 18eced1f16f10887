"""The configuration boundary: gin parsed once into an explicit RunConfig."""

import subprocess
import sys


def test_named_configs_resolve_from_any_directory(tmp_path):
    """Configs ship inside the package: found by name from outside the repository."""
    code = (
        "from tinylm_jax.config import gin as c\n"
        "print(c.parse(['experiments/demo.gin']).model.d_model)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "256"


def test_info_imports_no_data_or_checkpoint_library():
    """`tinylm info` reads configs only: TFDS, Grain, Orbax and matplotlib stay unimported."""
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "from tinylm_jax.cli import main as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert cli.main(['info', '--gin_file=models/demo_5m.gin']) == 0\n"
        "heavy = ('tensorflow_datasets', 'grain', 'orbax.checkpoint', 'matplotlib', 'zoopt')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
