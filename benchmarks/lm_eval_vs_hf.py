"""Wall time of lm-evaluation-harness tasks through `--model tinylm` (the workdir, JAX) and
through `--model hf` (the `export-hf` output, PyTorch), run alternately in one process.

    python benchmarks/lm_eval_vs_hf.py --workdir=runs/demo --hf_dir=runs/demo_hf \
        --items=200 --docs=50 --repeats=2

Writes a multiple-choice task (`--items` questions, 4 choices, drawn from the lines of
stdlib modules) and a rolling log-likelihood task (`--docs` stdlib modules cut to 2,000
characters) into a temporary directory; prints one JSON line per run and a summary with the
tinylm/hf time ratio of each repeat (the first tinylm run includes compilation).
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
import tempfile
import time
from pathlib import Path


def write_tasks(root: Path, items: int, docs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[: max(docs, 40)]
    lines = [ln.strip() for f in files for ln in f.read_text(errors="ignore").splitlines()]
    # Lines cut at a space: the context, then choices that start with a space (no choice
    # merges into the context's last token, which `--model hf` cannot score).
    lines = [ln for ln in lines if 20 <= len(ln) <= 80 and " " in ln[8:]]
    rows = []
    for _ in range(items):
        picked = rng.sample(lines, 4)
        cuts = [ln.index(" ", 8) for ln in picked]
        choices = [ln[cut:] for ln, cut in zip(picked, cuts, strict=True)]
        rows.append({"context": picked[0][: cuts[0]], "choices": choices, "answer": 0})
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [f.read_text(errors="ignore")[:2000] for f in files[:docs]]
    (root / "ppl.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    head = "dataset_path: json\ntest_split: test\ndataset_kwargs:\n  data_files:\n    test: "
    (root / "bench_mc.yaml").write_text(
        f"task: bench_mc\n{head}{root / 'mc.jsonl'}\noutput_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\ndoc_to_choice: choices\ndoc_to_target: answer\n"
        "target_delimiter: ''\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )
    (root / "bench_ppl.yaml").write_text(
        f"task: bench_ppl\n{head}{root / 'ppl.jsonl'}\noutput_type: loglikelihood_rolling\n"
        "doc_to_text: ''\ndoc_to_target: '{{text}}'\nmetric_list:\n  - metric: bits_per_byte\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--hf_dir", required=True)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()

    import lm_eval
    from lm_eval.tasks import TaskManager

    import tinylm_jax.interop.lm_harness  # noqa: F401  (registers `tinylm`)

    root = Path(tempfile.mkdtemp(prefix="lm_eval_bench_"))
    write_tasks(root, args.items, args.docs)
    manager = TaskManager(include_path=str(root))
    models = {
        "tinylm": f"workdir={args.workdir},batch_size={args.batch_size}",
        "hf": f"pretrained={args.hf_dir},dtype=float32,device=cpu,batch_size={args.batch_size}",
    }
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(args.repeats):
        for name, model_args in models.items():
            start = time.perf_counter()
            out = lm_eval.simple_evaluate(
                model=name, model_args=model_args, tasks=["bench_mc", "bench_ppl"],
                task_manager=manager, log_samples=False,
            )  # fmt: skip
            seconds[name].append(time.perf_counter() - start)
            results = out["results"]
            scores = {t: {k: v for k, v in r.items() if "," in k} for t, r in results.items()}
            record = {"repeat": repeat, "model": name, "seconds": seconds[name][-1]}
            print(json.dumps({**record, "results": scores}), flush=True)
    ratios = [t / h for t, h in zip(seconds["tinylm"], seconds["hf"], strict=True)]
    print(json.dumps({"seconds": seconds, "tinylm_over_hf": ratios}))


if __name__ == "__main__":
    main()
