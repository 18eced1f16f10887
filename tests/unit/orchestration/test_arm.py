"""Arms: the one place `tinylm` command lines are written."""

import sys

from tinylm_jax.orchestration.arm import Arm, tinylm


def test_commands_carry_the_gin_and_inherit_once(tmp_path):
    arm = Arm("deep", ("models/tiny_test.gin",), ("ModelConfig.n_layers = 2",), parent="runs/p")
    workdir = tmp_path / "deep"
    inherit, train = arm.commands(workdir)
    assert inherit == [
        sys.executable,
        "-m",
        "tinylm_jax.cli",
        "inherit",
        "--parent=runs/p",
        f"--workdir={workdir}",
        "--gin_file=models/tiny_test.gin",
        "--gin_param=ModelConfig.n_layers = 2",
    ]
    assert train[3:5] == ["train", f"--workdir={workdir}"] and train[5:] == inherit[6:]
    workdir.mkdir()
    (workdir / "inheritance.json").write_text("{}")  # what `tinylm inherit` leaves
    assert arm.commands(workdir) == [train]
    assert Arm("scratch").commands(workdir) == [[*train[:5]]]


def test_a_launcher_replaces_this_interpreter():
    assert tinylm(("eval", "--workdir=w")) == [
        sys.executable,
        "-m",
        "tinylm_jax.cli",
        "eval",
        "--workdir=w",
    ]
    launcher = ("launch/tpu_pod.sh", "tpu", "zone", "--")
    assert tinylm(("eval", "--workdir=w"), launcher) == [*launcher, "eval", "--workdir=w"]
