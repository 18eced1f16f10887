"""PanGu-π Pro parameter inheritance (arXiv 2402.02791, Sec. 3.3) on the stdlib corpus: every
width metric and layer selection rule against random init, same child, data and steps.

  python benchmarks/inheritance_table.py --root=runs/inheritance [--parent_steps 300]
      [--child_steps 100] [--parallel 1]

Trains a parent (or reuses ROOT/parent), then for each arm runs `tinylm inherit` (step 0) and
`tinylm train` for --child_steps steps; the random-init arm trains the same child from
scratch. Every run is a `tinylm` subprocess (tinylm_jax.orchestration), so a rerun resumes.
Prints a Markdown table of held-out loss and bits per byte at step 0 and at the end (the same
TrainConfig.eval_steps validation batches), also written to ROOT/report.md and report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinylm_jax import layout
from tinylm_jax.config.inherit import WIDTH_METRICS
from tinylm_jax.orchestration import report, runner
from tinylm_jax.orchestration.arm import Arm

COMMON = [
    "DataConfig.dataset = 'python_stdlib'",
    "DataConfig.max_documents = 400",
    "DataConfig.vocab_size = 2048",
    "DataConfig.validation_fraction = 0.05",
    "ModelConfig.vocab_size = 2048",
    "ModelConfig.tie_embeddings = True",
    "ModelConfig.max_seq_len = 128",
    "TrainConfig.batch_size = 16",
    "TrainConfig.seq_len = 128",
    "TrainConfig.log_every = 50",
    "TrainConfig.eval_every = 0",
    "TrainConfig.eval_steps = 8",
    "OptimizerConfig.learning_rate = 3e-3",
    "OptimizerConfig.warmup_steps = 10",
    "CheckpointConfig.every_steps = 100000",
    "CheckpointConfig.async_save = False",
]
PARENT = [
    "ModelConfig.d_model = 128",
    "ModelConfig.n_layers = 4",
    "ModelConfig.n_heads = 4",
    "ModelConfig.ffn_dim = 384",
]
CHILD = [
    "ModelConfig.d_model = 64",
    "ModelConfig.n_layers = 2",
    "ModelConfig.n_heads = 2",
    "ModelConfig.ffn_dim = 192",
]
ARMS = {
    **{f"{metric}/ends": (metric, "ends") for metric in WIDTH_METRICS},
    **{f"l2/{rule}": ("l2", rule) for rule in ("uniform", "first", "block_influence")},
}


def last_eval(workdir: Path) -> dict:
    records = layout.read_metrics(workdir)
    final = [r for r in records if "eval_loss" in r][-1]
    return {
        "step": final["step"],
        "loss": final["eval_loss"],
        "bits_per_byte": final["eval_bits_per_byte"],
    }


def train(arms: dict[str, Arm], root: Path, parallel: int) -> None:
    """Each arm in ROOT/FOLDER (inherited from its parent once, when it has one); exits if
    one fails."""
    jobs = [runner.job(folder, arm.commands(root / folder)) for folder, arm in arms.items()]
    if any(runner.run(jobs, parallel).values()):
        sys.exit("a run failed; rerun to resume it")


def collect(root: Path, arms: dict[str, Arm]) -> dict:
    """Step-0 results from each child's inheritance report (which also measured the parent
    and a random-init child), final ones from the metrics logs."""
    rows = {}
    for folder, arm in arms.items():
        inherited = json.loads(layout.inheritance_file(root / folder).read_text())
        rows[arm.name] = {
            "layers": ", ".join(str(i) for i in inherited["parent_layers"]),
            "step0": inherited["heldout"]["child_inherited"],
            "final": last_eval(root / folder),
        }
    heldout = inherited["heldout"]  # the same parent and random init in every report
    rows["parent"] = {"layers": "", "step0": heldout["parent"], "final": None}
    rows["random init"] = {
        "layers": "",
        "step0": heldout["child_random_init"],
        "final": last_eval(root / "random_init"),
    }
    return rows


def table(rows: dict, child_steps: int) -> list[str]:
    columns = ["arm (metric/layers)", "parent layers", "step-0 loss", "step-0 bits/byte"]
    columns += [f"step-{child_steps} loss", f"step-{child_steps} bits/byte"]
    cells = []
    for name in ["parent", "random init", *ARMS]:
        row = rows[name]
        final = row["final"] or {"loss": "–", "bits_per_byte": "–"}
        cells.append([name, row["layers"], row["step0"]["loss"], row["step0"]["bits_per_byte"]])
        cells[-1] += [final["loss"], final["bits_per_byte"]]
    return report.table(columns, cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--parent_steps", type=int, default=300)
    parser.add_argument("--child_steps", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=1, help="children trained at once")
    args = parser.parse_args()
    root = Path(args.root)
    steps = [f"TrainConfig.num_steps = {args.parent_steps}"]
    train({"parent": Arm("parent", gin_params=tuple(COMMON + PARENT + steps))}, root, 1)
    child = tuple(COMMON + CHILD + [f"TrainConfig.num_steps = {args.child_steps}"])
    arms = {}
    for name, (metric, rule) in ARMS.items():
        inherit = (
            f"InheritConfig.width_metric = '{metric}'",
            f"InheritConfig.layer_selection = '{rule}'",
            "InheritConfig.mask_steps = 100",
        )
        arms[name.replace("/", "_")] = Arm(name, (), child + inherit, str(root / "parent"))
    train({**arms, "random_init": Arm("random init", (), child)}, root, args.parallel)
    rows = collect(root, arms)
    print(report.write(root, rows, table(rows, args.child_steps)), end="")


if __name__ == "__main__":
    main()
