"""Parameter inheritance: identity, planted units, GQA grouping, learnable masks, end to end."""

import json
from pathlib import Path

import gin
import numpy as np
import pytest
from flax import traverse_util

from tests.helpers import tiny_run
from tinylm_jax.cli import main as cli
from tinylm_jax.config import gin as config_lib

REPO = Path(__file__).resolve().parents[2]


def flat(params: dict) -> dict:
    return traverse_util.flatten_dict(params, sep="/")


PARENT_GIN = ["ModelConfig.n_layers = 3", "ModelConfig.d_model = 48", "ModelConfig.ffn_dim = 128"]


TINY = "--gin_file=models/tiny_test.gin"  # the child: d_model 32 (head_dim 8), 2 layers


E2E_STEPS = 30


CHILD_STEPS = 12


def flags(params: list[str]) -> list[str]:
    return [f"--gin_param={p}" for p in params]


def child_flags(steps: int = E2E_STEPS, *params: str) -> list[str]:
    return [TINY, *flags(tiny_run(steps=steps) + ["CheckpointConfig.every_steps = 1000", *params])]


@pytest.fixture(scope="module")
def parent(tmp_path_factory, data_dir):
    """A 3-layer, d_model 48 (head_dim 12) parent trained for E2E_STEPS steps."""
    workdir = tmp_path_factory.mktemp("inherit") / "parent"
    args = ["train", f"--workdir={workdir}", TINY]
    args += flags(tiny_run(steps=E2E_STEPS) + PARENT_GIN + ["OptimizerConfig.learning_rate = 3e-3"])
    assert cli.main(args) == 0
    gin.clear_config()
    return workdir


def inherit_cli(parent, workdir, *params: str, steps: int = E2E_STEPS) -> int:
    args = ["inherit", f"--parent={parent}", f"--workdir={workdir}"]
    return cli.main(args + child_flags(steps, *params))


def eval_loss(workdir) -> float:
    config = config_lib.parse(workdir_config=workdir / "config.gin")
    from tinylm_jax.workdir.load import evaluate_workdir

    return evaluate_workdir(config, workdir, eval_steps=2)["eval_loss"]


@pytest.mark.slow
def test_inherited_child_trains_to_a_lower_loss_than_random_init(
    parent, tmp_path, capsys, gin_clean
):
    child = tmp_path / "child"
    params = [
        "InheritConfig.width_metric = 'taylor'",
        "InheritConfig.calibration_batches = 2",
        "InheritConfig.layer_selection = 'block_influence'",
    ]
    assert inherit_cli(parent, child, *params) == 0
    report = json.loads((child / "inheritance.json").read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{\n") :]) == report
    assert len(report["parent_layers"]) == 2 and len(report["block_influence"]) == 3
    assert report["parent"]["shape"]["d_model"] == 48 and report["child"]["shape"]["d_model"] == 32
    assert report["child"]["params"] < report["parent"]["params"]
    kept = report["importance_kept"]
    assert 0.5 < kept["hidden"] <= 1.0 and len(kept["heads"]) == len(kept["ffn"]) == 2
    heldout = report["heldout"]
    assert heldout["child_inherited"]["loss"] < heldout["child_random_init"]["loss"]
    # `tinylm train` continues from step 0 with a fresh optimizer; so does a random-init twin.
    assert cli.main(["train", f"--workdir={child}", *child_flags(CHILD_STEPS)]) == 0
    scratch = tmp_path / "scratch"
    assert cli.main(["train", f"--workdir={scratch}", *child_flags(CHILD_STEPS)]) == 0
    assert eval_loss(child) < eval_loss(scratch)


@pytest.fixture(scope="module")
def l2_child(parent, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("inherit") / "l2_child"
    assert inherit_cli(parent, workdir, "TrainConfig.eval_steps = 0") == 0
    gin.clear_config()
    return workdir


def test_inherit_from_an_hf_imported_parent(parent, l2_child, tmp_path, gin_clean):
    hf, imported, child = tmp_path / "hf", tmp_path / "imported", tmp_path / "child"
    assert cli.main(["export-hf", f"--workdir={parent}", f"--out={hf}"]) == 0
    assert cli.main(["import-hf", f"--hf_dir={hf}", f"--workdir={imported}"]) == 0
    assert inherit_cli(imported, child, "TrainConfig.eval_steps = 0") == 0
    from tinylm_jax.engine import checkpoint as ckpt

    ours, step = ckpt.load_params(child)
    assert step == 0
    for path, value in flat(ckpt.load_params(l2_child)[0]).items():
        np.testing.assert_allclose(flat(ours)[path], value, rtol=1e-6, err_msg=path)


@pytest.fixture(scope="module")
def compressed(parent, tmp_path_factory):
    """The parent's tokenizer compressed to 400 pieces, with its id map."""
    from tinylm_jax.recipes.pangu import tokenizer_compression

    data = config_lib.parse(["models/tiny_test.gin"], tiny_run()).data
    gin.clear_config()
    out = tmp_path_factory.mktemp("inherit") / "compressed"
    tokenizer_compression.compress_corpus(
        data, str(parent / "tokenizer.model"), out, vocab_size=400, sample_documents=4
    )
    return out


def test_inherit_through_a_compressed_tokenizer(parent, l2_child, compressed, tmp_path, gin_clean):
    from tinylm_jax.engine import checkpoint as ckpt
    from tinylm_jax.recipes.pangu import vocab_mapping

    child = tmp_path / "child"
    params = [f"InheritConfig.id_map = '{compressed}'", "ModelConfig.vocab_size = 400"]
    assert inherit_cli(parent, child, *params) == 0
    report = json.loads((child / "inheritance.json").read_text())
    assert report["child"]["shape"]["vocab_size"] == 400
    assert (
        report["heldout"]["child_inherited"]["bits_per_byte"]
        < (report["heldout"]["child_random_init"]["bits_per_byte"])
    )
    id_map = vocab_mapping.load_id_map(compressed)
    old = np.flatnonzero(id_map >= 0)
    mapped, plain = ckpt.load_params(child)[0], ckpt.load_params(l2_child)[0]
    np.testing.assert_array_equal(mapped["token_embed"][id_map[old]], plain["token_embed"][old])
    # The child workdir is self-contained: its config names its own (compressed) tokenizer.
    config = config_lib.parse(workdir_config=child / "config.gin")
    assert config.data.tokenizer == str((child / "tokenizer.model").absolute())
    assert (child / "tokenizer.model").read_bytes() == (compressed / "tokenizer.model").read_bytes()


@pytest.mark.parametrize(
    "params,message",
    [
        (["ModelConfig.d_model = 64"], "larger than the parent in d_model=64"),
        (["InheritConfig.width_metric = 'magnitude'"], "is not one of"),
        (["DataConfig.tokenizer = 'COMPRESSED'"], "is not the parent's"),
    ],
)
def test_user_errors_exit_2_before_any_work(
    parent, compressed, tmp_path, capsys, params, message, gin_clean
):
    params = [p.replace("COMPRESSED", str(compressed / "tokenizer.model")) for p in params]
    assert inherit_cli(parent, tmp_path / "child", *params) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "child").exists()
    assert inherit_cli(tmp_path / "nowhere", tmp_path / "child") == 2
    assert "config.gin not found" in capsys.readouterr().err


def test_sweep_spec_inherits_each_arm_once(tmp_path, capsys):

    from tinylm_jax.orchestration import grid as sweep

    spec = REPO / "configs" / "sweeps" / "pangu_inheritance.py"
    arms = sweep.expand(sweep.load_spec(spec))
    assert len(arms) == 16
    assert cli.main(["sweep", "run", f"--spec={spec}", f"--root={tmp_path}", "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 32 and " inherit --parent=runs/inheritance/parent " in lines[0]
    assert " train " in lines[1] and "InheritConfig.width_metric = 'random'" in arms[0].gin_params
    workdir = tmp_path / "pangu_inheritance" / arms[0].name
    workdir.mkdir(parents=True)
    (workdir / "inheritance.json").write_text("{}")
    assert [c[3] for c in arms[0].commands(workdir)] == ["train"]
