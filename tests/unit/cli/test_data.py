"""`tinylm data prepare` without Apache Beam: exit 2 naming the extra, before any work."""

import sys

from tinylm_jax.cli import main as cli


def test_prepare_without_beam_exits_2_with_the_install_line(tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import` raise ImportError, as when the extra is missing.
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    monkeypatch.setitem(sys.modules, "tinylm_jax.data.beam_prepare", None)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "cache"))
    assert cli.main(["data", "prepare", f"--out={tmp_path / 'out'}"]) == 2
    assert "pip install 'tinylm_jax[beam]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
