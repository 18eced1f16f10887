"""The command table: every entry resolves, registers its command and a handler; the command
modules stay small and import nothing heavy at module level."""

import argparse
import ast
import json
from pathlib import Path

import pytest

import tinylm_jax.cli
from tinylm_jax.cli import main as cli
from tinylm_jax.errors import ConfigError

CLI_DIR = Path(tinylm_jax.cli.__file__).parent
# What a command module may import at module level: `tinylm --help` must not import JAX.
LIGHT_IMPORTS = (
    "__future__",
    "argparse",
    "collections",
    "dataclasses",
    "importlib",
    "json",
    "logging",
)
LIGHT_IMPORTS += ("sys",)
LIGHT_IMPORTS += ("pathlib", "tinylm_jax.cli", "tinylm_jax.errors")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def leaves(parser: argparse.ArgumentParser, path=()):
    """(command path, parser) of every runnable (sub)command."""
    children = subcommands(parser)
    if not children:
        yield path, parser
    for name, child in children.items():
        yield from leaves(child, (*path, name))


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_table_entry_resolves_and_registers_its_command(name):
    target = cli.COMMANDS[name]
    module, _, function = target.partition(":")
    assert module.startswith("tinylm_jax.cli.") and function, target
    register = cli.load(target)
    assert callable(register)
    parser = argparse.ArgumentParser(prog="tinylm")
    register(parser.add_subparsers(dest="command"))
    assert list(subcommands(parser)) == [name]


def test_the_parser_holds_the_table_in_order_with_a_handler_per_command():
    parser = cli.build_parser()
    assert list(subcommands(parser)) == list(cli.COMMANDS)
    paths = [path for path, _ in leaves(parser)]
    assert ("tokenizer", "compress") in paths and ("sweep", "report") in paths
    for path, leaf in leaves(parser):
        assert callable(leaf.get_default("fn")), path


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tinylm ")
    listed = out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        assert f"\n    {name} " in out, name


def test_every_flag_help_shows_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "timed steps (default: 20)" in " ".join(out.split())


def test_user_errors_exit_2_naming_the_command(capsys, monkeypatch):
    from tinylm_jax.cli import info

    def fail(args):
        raise ConfigError("bad value")

    monkeypatch.setattr(info, "cmd_info", fail)
    assert cli.main(["info"]) == 2
    assert capsys.readouterr().err == "tinylm info: error: bad value\n"


def test_plot_labels_must_match_workdirs(capsys):
    argv = ["plot", "--workdir=a", "--workdir=b", "--label=x", "--out=p.png"]
    assert cli.main(argv) == 2
    assert "got 1 --label for 2 --workdir" in capsys.readouterr().err


def test_info_prints_json_and_a_table(capsys, gin_clean):
    assert cli.main(["info", "--gin_file=models/demo_5m.gin", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert cli.main(["info", "--gin_file=models/demo_5m.gin"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("parameters ") and f"{stats['total_params']:,}" in table
    assert "+ adamw state" in table
    # The optimizer's own state: AdamW two moments, Lion one (plus a few step counters).
    assert stats["optimizer_state_bytes"] == pytest.approx(stats["adam_state_bytes"], abs=64)
    assert cli.main(["info", "--gin_file=models/demo_5m.gin", "--json",
                     "--gin_param=OptimizerConfig.name = 'lion'"]) == 0  # fmt: skip
    lion = json.loads(capsys.readouterr().out)
    assert lion["optimizer_state_bytes"] == pytest.approx(stats["adam_state_bytes"] / 2, abs=64)


def test_import_hf_binds_the_checkpoint_architecture_last(tmp_path):
    from tinylm_jax.interop import import_hf

    hf = {
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
    }
    (tmp_path / "config.json").write_text(json.dumps(hf))
    bindings = import_hf.run_bindings(tmp_path, tmp_path / "w", ["ModelConfig.d_model = 8"])
    assert bindings[0] == "ModelConfig.d_model = 8"
    assert bindings.index("ModelConfig.d_model = 32") > 0


def module_level_imports(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_command_modules_are_small_and_light(path):
    source = path.read_text()
    assert len(source.splitlines()) <= 500
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno - node.lineno + 1 <= 80, node.name
    for name in module_level_imports(path):
        assert any(name == ok or name.startswith(ok + ".") for ok in LIGHT_IMPORTS), name


def test_plot_and_sweep_report_without_matplotlib_exit_2_with_the_pip_command(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert cli.main(["plot", "--workdir=a", "--out=p.png"]) == 2
    assert "pip install 'tinylm_jax[plot]'" in capsys.readouterr().err
    assert cli.main(["sweep", "report", "--spec=sweeps/stlm_ablation.py"]) == 2
    assert "pip install 'tinylm_jax[sweep]'" in capsys.readouterr().err


def test_a_bare_word_gin_value_says_strings_need_quotes(capsys, gin_clean):
    assert cli.main(["info", "--gin_param=ModelConfig.dtype=bfloat16"]) == 2
    err = capsys.readouterr().err
    assert "Strings need quotes: ModelConfig.dtype='bfloat16'" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinylm {cli.version()}"
    assert cli.version()[0].isdigit()


def test_every_flag_has_help_and_names_its_default_once():
    formatter = cli._HelpFormatter("tinylm")
    for path, leaf in leaves(cli.build_parser()):
        for action in leaf._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            assert action.help, (path, action.option_strings)
            text = formatter._expand_help(action)
            assert text.count("default") <= 1, (path, action.option_strings, text)


def test_configs_lists_every_named_config_with_its_parameter_count(capsys, gin_clean):
    from tinylm_jax.config.gin import CONFIGS_DIR

    assert cli.main(["configs", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    names = {f"models/{p.name}" for p in (CONFIGS_DIR / "models").glob("*.gin")}
    assert names <= set(rows) and "experiments/demo.gin" in rows
    # The counts the configs' own header comments state.
    assert rows["models/tinyllama_1_1b.gin"]["params"] == 1_100_048_384
    assert rows["models/bench_30m.gin"]["params"] == 31_465_984
    assert rows["models/stlm_10m.gin"]["description"] == (
        "Super Tiny Language Models 10M (arXiv 2405.14159)"
    )
    assert all(row["description"] for row in rows.values())


def test_print_config_prints_every_field_resolved_and_reads_no_data(
    capsys, gin_clean, tmp_path, monkeypatch
):
    from tinylm_jax.config import gin as config_lib

    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    budget = ["TrainConfig.train_tokens = 100000", "TrainConfig.num_steps = None"]
    argv = ["train", "--gin_file=experiments/demo.gin", "--print_config"]
    assert cli.main(argv + [f"--gin_param={p}" for p in budget]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "data").exists()
    gin_text, resolved = out.split("# Resolved:")
    assert "#   TrainConfig.num_steps = 49" in resolved  # ceil(100000 / (16 * 128))
    assert "#   parameters = 5,507,328" in resolved
    config = config_lib.parse(gin_params=[gin_text])
    assert config.train.num_steps == 49 and config.train.train_tokens == 100_000
    for field in ("ModelConfig.d_model", "OptimizerConfig.b2", "DataConfig.dataset"):
        assert field in gin_text


def test_train_needs_a_workdir_unless_it_prints_the_config(capsys):
    assert cli.main(["train", "--gin_file=experiments/demo.gin"]) == 2
    assert "needs --workdir" in capsys.readouterr().err
