"""The PanGu-π Pro ladder (arXiv 2402.02791, Fig. 1) as dependent, resumable steps.

Five arms, each adding one of the paper's design formulas to the one before, trained on the
same tokens of the same corpus:

  A  baseline: wide-shallow body, big tokenizer, random init
  B  + compact tokenizer: the same body on the compressed tokenizer (Sec. 3.1)
  C  + architecture: deeper and narrower at about B's parameter count (Sec. 3.2)
  D  + parameter inheritance: C's shape initialized from a larger parent (Sec. 3.3)
  E  + multiple rounds: D's start trained in two rounds with loss-weighted replay (Sec. 3.4)

Every step is one `tinylm` command; a step that finished writes `ROOT/steps/NAME.done`, so a
rerun skips it, and a step killed midway resumes (training resumes from its checkpoints). The
arms' gin files live in `configs/recipes/pangu_ladder/<scale>/`; the user's gin files and
params are appended to every step, so they move the whole ladder (e.g. to another corpus).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence

from etils import epath

from tinylm_jax.errors import ConfigError

RECIPES = ("pangu_ladder",)
SCALES = ("tiny", "1b")

# The paper's ladder (average accuracy over its benchmarks) and each step's gain.
PAPER_AVERAGES = {"A": 42.41, "B": 44.11, "C": 46.53, "D": 49.79, "E": 51.28}


@dataclasses.dataclass(frozen=True)
class Scale:
    big_vocab: int  # the big tokenizer's size (trained on the corpus unless given)
    compact_vocab: int  # the compressed tokenizer's size
    width_metric: str  # inheritance's importance metric (arXiv 2402.02791, Sec. 3.3)
    rounds: int = 2


SCALE_SETTINGS = {
    "tiny": Scale(big_vocab=16384, compact_vocab=8192, width_metric="taylor"),
    "1b": Scale(big_vocab=100883, compact_vocab=48000, width_metric="learnable_mask"),
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One `tinylm` command of the recipe."""

    name: str
    args: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Arm:
    """A trained run of the ladder: its workdir and the gin that configures it."""

    name: str  # 'A'..'E', or 'parent'
    workdir: str
    gin_files: tuple[str, ...]
    gin_params: tuple[str, ...]

    def gin_flags(self) -> tuple[str, ...]:
        return _gin_flags(self.gin_files, self.gin_params)


@dataclasses.dataclass(frozen=True)
class Ladder:
    root: epath.Path
    scale: str
    steps: tuple[Step, ...]
    arms: dict[str, Arm]  # 'A'..'E' and, unless given, 'parent'


def _gin_flags(files: Sequence[str], params: Sequence[str]) -> tuple[str, ...]:
    return (*(f"--gin_file={f}" for f in files), *(f"--gin_param={p}" for p in params))


def pangu_ladder(
    root: str | epath.PathLike,
    scale: str = "tiny",
    gin_files: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    parent: str | None = None,
    tokenizer: str | None = None,
    big_vocab: int | None = None,
    compact_vocab: int | None = None,
) -> Ladder:
    """The ladder's steps under `root`. `parent` (a trained workdir on the compact tokenizer,
    or on the big one with `InheritConfig.id_map` given) replaces the recipe's parent;
    `tokenizer` (a `.model`) replaces the big tokenizer trained on the corpus; `big_vocab` /
    `compact_vocab` replace the scale's tokenizer sizes (a small corpus cannot fill 16k
    pieces). The user's `gin_files` / `gin_params` come last in every step."""
    if scale not in SCALES:
        raise ConfigError(f"--scale={scale!r} is not one of {SCALES}")
    settings = SCALE_SETTINGS[scale]
    settings = dataclasses.replace(
        settings,
        big_vocab=big_vocab or settings.big_vocab,
        compact_vocab=compact_vocab or settings.compact_vocab,
    )
    if not 0 < settings.compact_vocab < settings.big_vocab:
        raise ConfigError(
            f"the compact vocabulary ({settings.compact_vocab}) must be smaller than the big "
            f"one ({settings.big_vocab}); set --compact_vocab / --big_vocab accordingly"
        )
    root = epath.Path(root)
    folder = f"recipes/pangu_ladder/{scale}"
    common = f"{folder}/common.gin"
    big = tokenizer or str(root / "tokenizers" / "big" / "tokenizer.model")
    compact_dir = root / "tokenizers" / "compact"
    compact = str(compact_dir / "tokenizer.model")
    user_files, user_params = tuple(gin_files), tuple(gin_params)

    def arm(name: str, folder_name: str, body: str, tokenizer_path: str, vocab: int) -> Arm:
        params = (f"DataConfig.tokenizer = '{tokenizer_path}'", f"ModelConfig.vocab_size = {vocab}")
        return Arm(
            name,
            str(root / folder_name),
            (common, f"{folder}/{body}.gin", *user_files),
            (*params, *user_params),
        )

    arms = {
        "A": arm("A", "arm_a_baseline", "wide_shallow", big, settings.big_vocab),
        "B": arm("B", "arm_b_compact_tokenizer", "wide_shallow", compact, settings.compact_vocab),
        "C": arm("C", "arm_c_deep_narrow", "deep_narrow", compact, settings.compact_vocab),
        "D": arm("D", "arm_d_inherited", "deep_narrow", compact, settings.compact_vocab),
        "E": arm("E", "arm_e_rounds", "deep_narrow", compact, settings.compact_vocab),
    }
    if parent is None:
        arms["parent"] = arm("parent", "parent", "parent", compact, settings.compact_vocab)
    parent_dir = parent or arms["parent"].workdir
    common_flags = _gin_flags((common, *user_files), user_params)
    steps = []
    if tokenizer is None:
        big_vocab = f"--gin_param=DataConfig.vocab_size = {settings.big_vocab}"
        steps.append(
            Step("big_tokenizer", ("tokenizer", "train", f"--out={big}", *common_flags, big_vocab))
        )
    steps.append(
        Step(
            "compact_tokenizer",
            (
                "tokenizer",
                "compress",
                f"--tokenizer={big}",
                f"--vocab_size={settings.compact_vocab}",
                f"--out={compact_dir}",
                *common_flags,
            ),
        )
    )
    for name in "ABC":
        steps.append(Step(f"arm_{name.lower()}", _train(arms[name])))
    if parent is None:
        steps.append(Step("parent", _train(arms["parent"])))
    metric = f"--gin_param=InheritConfig.width_metric = '{settings.width_metric}'"
    for name in "DE":
        inherit = ("inherit", f"--parent={parent_dir}", f"--workdir={arms[name].workdir}")
        steps.append(
            Step(f"arm_{name.lower()}_inherit", (*inherit, metric, *arms[name].gin_flags()))
        )
    steps.append(Step("arm_d", ("train", f"--workdir={arms['D'].workdir}")))
    rounds = f"--gin_param=RoundsConfig.num_rounds = {settings.rounds}"
    steps.append(Step("arm_e", ("train", f"--workdir={arms['E'].workdir}", rounds)))
    return Ladder(root, scale, tuple(steps), arms)


def _train(arm: Arm) -> tuple[str, ...]:
    return ("train", f"--workdir={arm.workdir}", *arm.gin_flags())


def command(step: Step, launcher: Sequence[str] = ()) -> list[str]:
    """The command line of `step`: `python -m tinylm_jax.cli ...`, or after `launcher` (e.g.
    `launch/tpu_pod.sh TPU ZONE --`) the bare `tinylm` arguments."""
    if launcher:
        return [*launcher, *step.args]
    return [sys.executable, "-m", "tinylm_jax.cli", *step.args]


def done_marker(root: epath.Path, step: Step) -> epath.Path:
    return epath.Path(root) / "steps" / f"{step.name}.done"


def run(ladder: Ladder, dry_run: bool = False, launcher: Sequence[str] = ()) -> int:
    """Runs the steps not yet done, in order; returns 0, or the failing step's exit status."""
    for number, step in enumerate(ladder.steps, 1):
        line = shlex.join(command(step, launcher))
        head = f"[{number}/{len(ladder.steps)}] {step.name}"
        if dry_run:
            print(f"{head}\n  {line}", flush=True)
            continue
        marker = done_marker(ladder.root, step)
        if marker.exists():
            print(f"{head}: done, skipped", flush=True)
            continue
        print(f"{head}: {line}", flush=True)
        code = subprocess.run(command(step, launcher)).returncode
        if code:
            print(f"{head} failed with exit status {code}; rerun to continue", flush=True)
            return code
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(line + "\n")
    return 0


def gains(rows: dict[str, dict]) -> dict[str, dict]:
    """Each arm's step against the previous arm: the change of held-out bits per byte (lower
    is better) beside the paper's average-accuracy gain (higher is better)."""
    out, previous = {}, None
    for name in sorted(rows):
        bits = rows[name]["eval_bits_per_byte"]
        paper_gain = (
            None if name == "A" else PAPER_AVERAGES[name] - PAPER_AVERAGES[chr(ord(name) - 1)]
        )
        out[name] = {
            "bits_per_byte_change": None if previous is None else bits - previous,
            "paper_average": PAPER_AVERAGES[name],
            "paper_gain": None if paper_gain is None else round(paper_gain, 2),
        }
        previous = bits
    return out


FORMULAS = {
    "A": "baseline (wide-shallow, big tokenizer, random init)",
    "B": "+ compact tokenizer",
    "C": "+ architecture (deeper, narrower)",
    "D": "+ parameter inheritance",
    "E": "+ multiple-round training",
}


def check_same_tokens(rows: dict[str, dict]) -> None:
    tokens = {name: row["train_tokens"] for name, row in rows.items()}
    if len(set(tokens.values())) > 1:
        raise ConfigError(f"the ladder's arms must train on the same tokens; got {tokens}")


def report_markdown(rows: dict[str, dict], plot_name: str | None, parent: dict | None) -> str:
    step_gains = gains(rows)
    lines = [
        "# PanGu-π Pro ladder",
        "",
        "Held-out bits per byte (lower is better; comparable across tokenizers) of every arm, "
        "each trained on the same tokens, beside the paper's average accuracy "
        "(arXiv 2402.02791, Fig. 1; higher is better).",
        "",
        "| arm | formula | params | train tokens | bits/byte | change | paper avg | paper gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(rows):
        row, gain = rows[name], step_gains[name]
        change, paper_gain = gain["bits_per_byte_change"], gain["paper_gain"]
        lines.append(
            f"| {name} | {FORMULAS[name]} | {row['params']:,} | {row['train_tokens']:,} | "
            f"{row['eval_bits_per_byte']:.4f} | {'—' if change is None else f'{change:+.4f}'} | "
            f"{gain['paper_average']:.2f} | "
            f"{'—' if paper_gain is None else f'{paper_gain:+.2f}'} |"
        )
    if parent:
        lines += [
            "",
            f"The parent of arm D ({parent['params']:,} params) cost {parent['train_tokens']:,} "
            "training tokens on top of the arms' (PanGu inherited from an existing model).",
        ]
    if plot_name:
        lines += ["", f"![training curves]({plot_name})"]
    return "\n".join(lines) + "\n"


def write_report(
    root: epath.Path, rows: dict[str, dict], parent: dict | None, plot_name: str | None
) -> dict:
    """`report.json` and `report.md` under `root`; `rows` maps 'A'..'E' to params,
    train_tokens, eval_bits_per_byte and eval_loss."""
    check_same_tokens(rows)
    report = {"arms": rows, "gains": gains(rows), "formulas": FORMULAS, "parent": parent}
    (root / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (root / "report.md").write_text(report_markdown(rows, plot_name, parent))
    return report


def arm_shape(arm: Arm) -> dict:
    """Parameter counts and training tokens of an arm, from its gin (`tinylm info`'s figures,
    computed without allocating)."""
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.model.counting import model_stats

    config = config_lib.parse(arm.gin_files, arm.gin_params)
    stats = model_stats(config.model, config.train.seq_len)
    return {
        "params": stats.total_params,
        "non_embedding_params": stats.non_embedding_params,
        "train_tokens": config.train.num_steps * config.train.tokens_per_step,
        "model": dataclasses.asdict(config.model),
    }


def check_plan(ladder: Ladder) -> dict[str, dict]:
    """Shapes of every arm; fails if the arms' training tokens differ or arm D's shape does
    not fit inside the recipe's parent."""
    shapes = {name: arm_shape(arm) for name, arm in ladder.arms.items()}
    check_same_tokens({k: v for k, v in shapes.items() if k != "parent"})
    if "parent" in shapes:
        child, parent = shapes["D"]["model"], shapes["parent"]["model"]
        larger = [f for f in ("d_model", "n_layers", "n_heads") if child[f] > parent[f]]
        if larger:
            raise ConfigError(f"arm D is larger than the parent in {larger}: {child} vs {parent}")
    return shapes


def collect_rows(ladder: Ladder, eval_steps: int | None) -> tuple[dict[str, dict], dict | None]:
    """Each trained arm's params, training tokens and held-out metrics (`tinylm eval`)."""
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.workdir.load import config_path, evaluate_workdir

    rows = {}
    for name in "ABCDE":
        arm = ladder.arms[name]
        config = config_lib.parse(workdir_config=config_path(arm.workdir))
        result = evaluate_workdir(config, arm.workdir, eval_steps)
        shape = arm_shape(arm)
        rows[name] = {
            "params": shape["params"],
            "non_embedding_params": shape["non_embedding_params"],
            "train_tokens": config.train.num_steps * config.train.tokens_per_step,
            "eval_bits_per_byte": result["eval_bits_per_byte"],
            "eval_loss": result["eval_loss"],
            "workdir": arm.workdir,
        }
    parent = None
    if "parent" in ladder.arms:
        shape = arm_shape(ladder.arms["parent"])
        parent = {k: shape[k] for k in ("params", "train_tokens")}
    return rows, parent
