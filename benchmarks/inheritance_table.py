"""PanGu-π Pro parameter inheritance (arXiv 2402.02791, Sec. 3.3) on the stdlib corpus: every
width metric and layer selection rule against random init, same child, data and steps.

  python benchmarks/inheritance_table.py --root=runs/inheritance [--parent_steps 300]
      [--child_steps 100]

Trains a parent (or reuses ROOT/parent), then for each arm runs `tinylm inherit` (step 0) and
`tinylm train` for --child_steps steps; the random-init arm trains the same child from
scratch. Prints a Markdown table of held-out loss and bits per byte at step 0 and at the end
(the same TrainConfig.eval_steps validation batches), and writes ROOT/table.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinylm_jax import layout
from tinylm_jax.cli import main as cli

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
    **{
        f"{metric}/ends": (metric, "ends")
        for metric in ("random", "l1", "l2", "taylor", "activation", "learnable_mask")
    },
    **{f"l2/{rule}": ("l2", rule) for rule in ("uniform", "first", "block_influence")},
}


def flags(params: list[str]) -> list[str]:
    return [f"--gin_param={p}" for p in params]


def last_eval(workdir: Path) -> dict:
    records = layout.read_metrics(workdir)
    final = [r for r in records if "eval_loss" in r][-1]
    return {
        "step": final["step"],
        "loss": final["eval_loss"],
        "bits_per_byte": final["eval_bits_per_byte"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--parent_steps", type=int, default=300)
    parser.add_argument("--child_steps", type=int, default=100)
    args = parser.parse_args()
    root = Path(args.root)
    parent = root / "parent"
    if not layout.checkpoints_dir(parent).exists():
        steps = [f"TrainConfig.num_steps = {args.parent_steps}"]
        assert cli.main(["train", f"--workdir={parent}", *flags(COMMON + PARENT + steps)]) == 0
    child = COMMON + CHILD + [f"TrainConfig.num_steps = {args.child_steps}"]
    rows = {}
    for name, (metric, rule) in ARMS.items():
        workdir = root / name.replace("/", "_")
        inherit = [
            f"InheritConfig.width_metric = '{metric}'",
            f"InheritConfig.layer_selection = '{rule}'",
            "InheritConfig.mask_steps = 100",
        ]
        if not layout.inheritance_file(workdir).exists():
            argv = ["inherit", f"--parent={parent}", f"--workdir={workdir}"]
            assert cli.main(argv + flags(child + inherit)) == 0
        report = json.loads(layout.inheritance_file(workdir).read_text())
        assert cli.main(["train", f"--workdir={workdir}"]) == 0
        rows[name] = {
            "layers": report["parent_layers"],
            "step0": report["heldout"]["child_inherited"],
            "final": last_eval(workdir),
        }
        rows.setdefault(
            "random init", {"layers": None, "step0": report["heldout"]["child_random_init"]}
        )
        rows["parent"] = {"layers": None, "step0": report["heldout"]["parent"]}
    scratch = root / "random_init"
    assert cli.main(["train", f"--workdir={scratch}", *flags(child)]) == 0
    rows["random init"]["final"] = last_eval(scratch)
    (root / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"| arm (metric/layers) | parent layers | step-0 loss | step-0 bits/byte | "
        f"step-{args.child_steps} loss | step-{args.child_steps} bits/byte |"
    )
    print("|---|---|---|---|---|---|")
    order = ["parent", "random init", *ARMS]
    for name, row in ((n, rows[n]) for n in order):
        final = row.get("final")
        end = f"{final['loss']:.3f} | {final['bits_per_byte']:.3f}" if final else "– | –"
        print(
            f"| {name} | {row['layers'] or ''} | {row['step0']['loss']:.3f} | "
            f"{row['step0']['bits_per_byte']:.3f} | {end} |"
        )


if __name__ == "__main__":
    main()
