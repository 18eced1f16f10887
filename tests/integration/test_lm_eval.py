"""lm-evaluation-harness on a workdir (`tinylm lm-eval`, `--model tinylm`) on local task YAMLs
over small JSONL data: a multiple-choice, a rolling log-likelihood and a generate_until task,
checked against `tinylm eval --task`, `tinylm sample` and `--model hf` on the export."""

import json
import os
from pathlib import Path

import pytest

from tests.helpers import tiny_run
from tinylm_jax.cli import main as cli
from tinylm_jax.cli.lm_eval import harness_main

pytest.importorskip("lm_eval")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

pytestmark = pytest.mark.slow  # trains a model and starts the harness: ~1 min on 2 cores

SAMPLE_TASK = Path(__file__).resolve().parents[1] / "data" / "mc_sample.jsonl"
TEXTS = [
    "def main(argv):\n    return len(argv)\n",
    "import os\nimport sys\n",
    "class Point:\n    x: int\n    y: int\n" * 12,  # longer than max_seq_len: several windows
]
PROMPTS = ["import os", "def main(", "class A:\n    def", "x = 1"]
GEN_TOKENS = 8


def _yaml(task: str, data: Path, body: str) -> str:
    return (
        f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\n{body}"
    )


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """A directory of three task YAMLs and their JSONL data."""
    root = tmp_path_factory.mktemp("tasks")
    (root / "mc.jsonl").write_text(SAMPLE_TASK.read_text())
    mc = "output_type: multiple_choice\ndoc_to_text: '{{context}}'\ndoc_to_choice: choices\n"
    mc += "doc_to_target: answer\ntarget_delimiter: ''\n"
    mc += "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    (root / "tiny_mc.yaml").write_text(_yaml("tiny_mc", root / "mc.jsonl", mc))

    (root / "ppl.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    ppl = "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
    ppl += "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n"
    (root / "tiny_ppl.yaml").write_text(_yaml("tiny_ppl", root / "ppl.jsonl", ppl))

    rows = [{"prompt": p, "target": ""} for p in PROMPTS]
    (root / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{target}}'\n"
    gen += f"generation_kwargs:\n  until: ['\\n\\n']\n  max_gen_toks: {GEN_TOKENS}\n"
    gen += "  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
    (root / "tiny_gen.yaml").write_text(_yaml("tiny_gen", root / "gen.jsonl", gen))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> Path:
    """A tiny model trained for 2 steps, with a wide init (no near-ties for greedy decoding);
    max_seq_len 64, so the long text spans several rolling windows."""
    workdir = tmp_path_factory.mktemp("lm_eval") / "run"
    params = tiny_run(steps=2) + ["ModelConfig.tie_embeddings = False"]
    params += ["ModelConfig.init_std = 0.2", "ModelConfig.max_seq_len = 64"]
    args = ["train", f"--workdir={workdir}", "--gin_file=models/tiny_test.gin"]
    assert cli.main(args + [f"--gin_param={p}" for p in params]) == 0
    return workdir


@pytest.fixture(scope="module")
def ours(trained, tasks) -> dict:
    """`tinylm lm-eval` on the three tasks, with every sample logged: the JSON it wrote."""
    args = ["lm-eval", f"--workdir={trained}", "--tasks=tiny_mc,tiny_ppl,tiny_gen"]
    args += [f"--include_path={tasks}", "--batch_size=3", "--log_samples"]
    assert cli.main(args) == 0
    (written,) = (trained / "lm_eval").glob("results_*.json")
    return json.loads(written.read_text())


def _resps(results: dict, task: str) -> list:
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [s["filtered_resps"] for s in samples]


def _lls(responses: list) -> list[float]:
    """Log-likelihoods of the samples' filtered responses: (ll, is_greedy) pairs (JSON: lists)
    per choice, or one rolling total per document."""
    return [float(r[0] if isinstance(r, (list, tuple)) else r) for rows in responses for r in rows]


def test_multiple_choice_equals_tinylm_eval(trained, ours, capsys):
    args = ["eval", f"--workdir={trained}", "--eval_steps=0", f"--task={SAMPLE_TASK}"]
    assert cli.main(args) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tasks"]["mc_sample"]
    got = ours["results"]["tiny_mc"]
    assert got["acc,none"] == expected["acc"] and got["acc_norm,none"] == expected["acc_norm"]


def test_rolling_loglikelihood_equals_a_direct_score(trained, ours):
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.eval import multiple_choice
    from tinylm_jax.workdir.load import load_workdir

    run, params, tokenizer = load_workdir(
        config_lib.parse(workdir_config=trained / "config.gin"), trained
    )
    got = [r[0] for r in _resps(ours, "tiny_ppl")]
    short = [([tokenizer.bos_id], tokenizer.encode(t)) for t in TEXTS[:2]]
    expected = multiple_choice.loglikelihoods(run, params, short)
    assert got[:2] == pytest.approx(list(expected), abs=1e-4)
    assert len(tokenizer.encode(TEXTS[2])) > 64 and got[2] < got[0]
    assert ours["results"]["tiny_ppl"]["bits_per_byte,none"] > 0


def test_generate_until_equals_greedy_sample(trained, ours, capsys):
    args = ["sample", f"--workdir={trained}", f"--max_new_tokens={GEN_TOKENS}", "--temperature=0"]
    assert cli.main(args + ["--json"] + [f"--prompt={p}" for p in PROMPTS]) == 0
    samples = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [s["completion"].split("\n\n")[0] for s in samples]
    assert [r[0] for r in _resps(ours, "tiny_gen")] == expected
    assert any(expected)


def test_model_hf_on_the_export_agrees(trained, ours, tasks, tmp_path):
    """The harness's own PyTorch model on `export-hf`'s output: the same log-likelihoods.

    Contexts start with BOS on both sides (`add_bos_token=True`). A rolling task takes
    `add_bos_token=False` on the HF side: with True, `--model hf` puts a BOS inside the
    document as well as before it, and scores that second BOS as text."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    exported = tmp_path / "hf"
    assert cli.main(["export-hf", f"--workdir={trained}", f"--out={exported}"]) == 0
    for task, bos in (("tiny_mc", True), ("tiny_ppl", False)):
        hf = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={exported},dtype=float32,add_bos_token={bos},device=cpu",
            tasks=[task],
            task_manager=TaskManager(include_path=str(tasks)),
            batch_size=4,
            log_samples=True,
        )
        mine, theirs = _lls(_resps(ours, task)), _lls(_resps(hf, task))
        assert len(mine) == {"tiny_mc": 17, "tiny_ppl": 3}[task]
        assert mine == pytest.approx(theirs, abs=1e-4), task
        metric = {"tiny_mc": "acc,none", "tiny_ppl": "bits_per_byte,none"}[task]
        assert hf["results"][task][metric] == pytest.approx(ours["results"][task][metric])


def test_lm_eval_command_line_with_model_tinylm(trained, tasks, tmp_path, capsys):
    """`lm_eval --model tinylm` (the harness's command line, with the model registered)."""
    out = tmp_path / "out"
    argv = ["--model", "tinylm", "--model_args", f"workdir={trained},batch_size=2"]
    argv += ["--tasks", "tiny_mc", "--include_path", str(tasks), "--output_path", str(out)]
    harness_main(argv)
    (written,) = out.rglob("results_*.json")
    results = json.loads(written.read_text())["results"]["tiny_mc"]
    assert 0 <= results["acc,none"] <= 1 and results["alias"] == "tiny_mc"


def test_unknown_task_and_missing_workdir_exit_2(trained, tasks, tmp_path, capsys):
    args = ["lm-eval", f"--workdir={tmp_path}", "--tasks=tiny_mc", f"--include_path={tasks}"]
    assert cli.main(args) == 2
    assert "config.gin not found" in capsys.readouterr().err
    args = ["lm-eval", f"--workdir={trained}", "--tasks=tiny_mc,no_such_task"]
    assert cli.main(args + [f"--include_path={tasks}"]) == 2
    assert "unknown lm-eval task(s) ['no_such_task']" in capsys.readouterr().err
    argv = ["--model", "tinylm", "--model_args", f"workdir={tmp_path}", "--tasks", "tiny_mc"]
    with pytest.raises(SystemExit) as exited:
        harness_main(argv + ["--include_path", str(tasks)])
    assert exited.value.code == 2 and "config.gin not found" in capsys.readouterr().err
