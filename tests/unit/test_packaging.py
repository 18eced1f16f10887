"""Dependencies are declared honestly: every third-party module the package imports is a
requirement of the core install or of an extra; plots and ZOOpt are extras; no private API of
JAX or gin is used; a missing extra is one message naming its pip command."""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import tinylm_jax
from tinylm_jax.errors import ConfigError, require_extra

PACKAGE = Path(tinylm_jax.__file__).parent
REPO = PACKAGE.parent


def requirement_names(lines: str) -> set[str]:
    names = set()
    for line in lines.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~ ;]", line)[0].lower().replace("_", "-"))
    return names


def declared() -> tuple[set[str], dict[str, set[str]]]:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    extras = {k: requirement_names(v) for k, v in setup["options.extras_require"].items()}
    return requirement_names(setup["options"]["install_requires"]), extras


def imported_modules() -> set[str]:
    """Top-level third-party modules imported anywhere in the package (lazily or not)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"tinylm_jax"}


def test_every_imported_module_is_declared():
    core, extras = declared()
    everything = core.union(*extras.values())
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(imported_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert names & everything, f"{module} is imported but not declared in setup.cfg"


def test_core_install_leaves_plots_and_zoopt_to_extras():
    core, extras = declared()
    assert not {"matplotlib", "zoopt"} & core
    assert "matplotlib" in extras["plot"]
    assert {"zoopt", "matplotlib"} <= extras["sweep"]
    # The tests exercise sweeps and plots, so the test extra holds both.
    assert {"zoopt", "matplotlib"} <= extras["test"]


def test_no_private_jax_or_gin_api():
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text()
        assert "jax._src" not in source, path
        assert "_REGISTRY" not in source, path


def test_constraints_pin_every_core_requirement():
    core, _ = declared()
    pinned = requirement_names((REPO / "constraints.txt").read_text())
    assert core <= pinned, sorted(core - pinned)


def test_missing_extra_names_its_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'tinylm_jax\[plot\]'"):
        require_extra("matplotlib", "plot", "tinylm plot")
    require_extra("numpy", "core", "anything")  # installed: no error
