"""The PanGu-π Pro ladder (arXiv 2402.02791, Fig. 1) as dependent, resumable steps.

Five arms, each adding one of the paper's design formulas to the one before, trained on the
same tokens of the same corpus:

  A  baseline: wide-shallow body, big tokenizer, random init
  B  + compact tokenizer: the same body on the compressed tokenizer (Sec. 3.1)
  C  + architecture: deeper and narrower (Sec. 3.2); `arch_budget` sizes it: 'equal' (C's
     total equals B's: depth against width at one size) or 'reinvest' (C's total near A's:
     the embedding parameters the compact tokenizer freed go into a deeper body, as the
     paper's released 1B configs do: A 1.03B, B 0.81B, C 0.95B)
  C+ compute-matched control for D: C's model from random init on the parent's training
     tokens plus its own, so D − C+ is what inheritance buys at equal total compute
  D  + parameter inheritance: C's shape initialized from a larger parent (Sec. 3.3)
  E  + multiple rounds: D's start trained in two rounds with loss-weighted replay of batches
     (Sec. 3.4: the released rule draws batches)

Every step is one `tinylm` command; a step that finished writes `ROOT/steps/NAME.done`, so a
rerun skips it, and a step killed midway resumes (training resumes from its checkpoints). The
arms' gin files live in `configs/recipes/pangu_ladder/<scale>/`; the user's gin files and
params are appended to every step, so they move the whole ladder (e.g. to another corpus).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable, Sequence

from etils import epath

from tinylm_jax import layout
from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import report as report_lib
from tinylm_jax.orchestration import runner
from tinylm_jax.orchestration.arm import Arm, gin_flags, tinylm
from tinylm_jax.orchestration.ladder_report import (
    ARMS,
    FORMULAS,
    PAPER_AVERAGES,
    check_same_tokens,
    gains,
    write_report,
)

__all__ = ["FORMULAS", "PAPER_AVERAGES", "gains", "write_report"]  # the report's, re-exported

SCALES = ("tiny", "1b")

ARCH_BUDGETS = ("equal", "reinvest")


@dataclasses.dataclass(frozen=True)
class Scale:
    big_vocab: int  # the big tokenizer's size (trained on the corpus unless given)
    compact_vocab: int  # the compressed tokenizer's size
    width_metric: str  # inheritance's importance metric (arXiv 2402.02791, Sec. 3.3)
    arch_budget: str  # the default sizing of arm C (see the module docstring)
    bodies: tuple[tuple[str, str], ...]  # arch_budget -> arm C's body gin
    rounds: int = 2
    # Arm E's unit: PanGu's released rule draws batches (torch.multinomial over batch losses).
    unit: str = "batch"

    def body(self) -> str:
        return dict(self.bodies)[self.arch_budget]


SCALE_SETTINGS = {
    # Today's tiny sizing holds totals equal (C 3.79M vs B 3.80M); 'reinvest' is 224 x 6.
    "tiny": Scale(
        big_vocab=16384,
        compact_vocab=8192,
        width_metric="taylor",
        arch_budget="equal",
        bodies=(("equal", "deep_narrow"), ("reinvest", "deep_narrow_reinvest")),
    ),
    # The released 1B Pro reinvests (0.95B vs A's 1.03B); 'equal' is its body at 16 layers.
    "1b": Scale(
        big_vocab=100883,
        compact_vocab=48000,
        width_metric="learnable_mask",
        arch_budget="reinvest",
        bodies=(("equal", "deep_narrow_equal"), ("reinvest", "deep_narrow")),
    ),
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One `tinylm` command of the recipe (its arguments after `tinylm`)."""

    name: str
    args: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Ladder:
    """The recipe's steps and its arms ('A'..'E' and, unless given, 'parent'); an arm trains
    in ROOT/ARM_NAME."""

    root: epath.Path
    scale: str
    steps: tuple[Step, ...]
    arms: dict[str, Arm]

    def workdir(self, key: str) -> epath.Path:
        return self.root / self.arms[key].name


def scale_settings(
    scale: str,
    big_vocab: int | None,
    compact_vocab: int | None,
    arch_budget: str | None = None,
    unit: str | None = None,
) -> Scale:
    """The scale's settings with the tokenizer sizes, arm C's sizing and arm E's unit the
    user gave."""
    if scale not in SCALES:
        raise ConfigError(f"--scale={scale!r} is not one of {SCALES}")
    if arch_budget is not None and arch_budget not in ARCH_BUDGETS:
        raise ConfigError(f"--arch_budget={arch_budget!r} is not one of {ARCH_BUDGETS}")
    settings = SCALE_SETTINGS[scale]
    settings = dataclasses.replace(
        settings,
        big_vocab=big_vocab or settings.big_vocab,
        compact_vocab=compact_vocab or settings.compact_vocab,
        arch_budget=arch_budget or settings.arch_budget,
        unit=unit or settings.unit,
    )
    if not 0 < settings.compact_vocab < settings.big_vocab:
        raise ConfigError(
            f"the compact vocabulary ({settings.compact_vocab}) must be smaller than the big "
            f"one ({settings.big_vocab}); set --compact_vocab / --big_vocab accordingly"
        )
    return settings


def pangu_ladder(
    root: str | epath.PathLike,
    scale: str = "tiny",
    gin_files: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    parent: str | None = None,
    tokenizer: str | None = None,
    big_vocab: int | None = None,
    compact_vocab: int | None = None,
    arch_budget: str | None = None,
    unit: str | None = None,
    info: Info | None = None,
) -> Ladder:
    """The ladder's steps under `root`. `parent` (a trained workdir on the compact tokenizer,
    or on the big one with `InheritConfig.id_map` given) replaces the recipe's parent;
    `tokenizer` (a `.model`) replaces the big tokenizer trained on the corpus; `big_vocab` /
    `compact_vocab` replace the scale's tokenizer sizes (a small corpus cannot fill 16k
    pieces); `arch_budget` sizes arm C ('equal' or 'reinvest'); `unit` is arm E's round unit
    ('batch', the paper's, or 'sequence'). The user's `gin_files` / `gin_params` come last in
    every step. With `info` (see `arm_info`), the plan holds arm C+ when the parent's tokens
    are known (the recipe's parent, or a given one that has trained)."""
    settings = scale_settings(scale, big_vocab, compact_vocab, arch_budget, unit)
    root = epath.Path(root)
    folder = f"recipes/pangu_ladder/{scale}"
    user = (tuple(gin_files), tuple(gin_params))
    big = tokenizer or str(root / "tokenizers" / "big" / "tokenizer.model")
    compact = str(root / "tokenizers" / "compact" / "tokenizer.model")
    arms = _arms(folder, user, big, compact, settings, with_parent=parent is None)
    ladder = Ladder(root, scale, (), arms)
    common = gin_flags((f"{folder}/common.gin", *user[0]), user[1])
    steps = _tokenizer_steps(big, compact, settings, common, train_big=tokenizer is None)
    steps += _arm_steps(ladder, settings, str(parent or ladder.workdir("parent")))
    ladder = dataclasses.replace(ladder, steps=tuple(steps))
    return ladder if info is None else with_control(ladder, info, parent)


def with_control(ladder: Ladder, info: Info, parent: str | None) -> Ladder:
    """`ladder` with arm C+ (and its step right after arm C's): C's model and gin, trained
    from random init for the steps that hold the parent's training tokens plus C's own. A
    given parent that has not trained (or logged no steps) leaves the ladder as it is."""
    if parent is None:
        parent_tokens = info(ladder.arms["parent"])["train_tokens"]
    elif layout.is_trained(parent):
        parent_tokens = trained_tokens(parent)
    else:
        return ladder
    c = info(ladder.arms["C"])
    steps = -(-(c["train_tokens"] + parent_tokens) // c["tokens_per_step"])
    arm = ladder.arms["C"]
    control = dataclasses.replace(
        arm,
        name="arm_cplus_compute_matched",
        gin_params=(*arm.gin_params, f"TrainConfig.num_steps = {steps}"),
    )
    ladder = dataclasses.replace(ladder, arms={**ladder.arms, "C+": control})
    step = Step("arm_cplus", control.train_args(ladder.workdir("C+")))
    at = [s.name for s in ladder.steps].index("arm_c") + 1
    return dataclasses.replace(ladder, steps=(*ladder.steps[:at], step, *ladder.steps[at:]))


def _arms(
    folder: str,
    user: tuple[tuple[str, ...], tuple[str, ...]],
    big: str,
    compact: str,
    settings: Scale,
    with_parent: bool,
) -> dict[str, Arm]:
    """The five arms (and the recipe's parent): common.gin, the body's gin and the user's
    gin, on the big or the compact tokenizer."""

    def arm(folder_name: str, body: str, tokenizer_path: str, vocab: int) -> Arm:
        files = (f"{folder}/common.gin", f"{folder}/{body}.gin", *user[0])
        params = (f"DataConfig.tokenizer = '{tokenizer_path}'", f"ModelConfig.vocab_size = {vocab}")
        group = folder.removeprefix("recipes/").replace("/", "_")  # e.g. pangu_ladder_tiny
        return Arm(folder_name, files, (*params, *user[1]), group=group)

    compact_vocab, body = settings.compact_vocab, settings.body()
    arms = {
        "A": arm("arm_a_baseline", "wide_shallow", big, settings.big_vocab),
        "B": arm("arm_b_compact_tokenizer", "wide_shallow", compact, compact_vocab),
        "C": arm("arm_c_deep_narrow", body, compact, compact_vocab),
        "D": arm("arm_d_inherited", body, compact, compact_vocab),
        "E": arm("arm_e_rounds", body, compact, compact_vocab),
    }
    if with_parent:
        arms["parent"] = arm("parent", "parent", compact, compact_vocab)
    return arms


def _tokenizer_steps(
    big: str, compact: str, settings: Scale, common: tuple[str, ...], train_big: bool
) -> list[Step]:
    """The big tokenizer trained on the corpus (unless given), then its compressed copy."""
    steps = []
    if train_big:
        size = f"--gin_param=DataConfig.vocab_size = {settings.big_vocab}"
        steps.append(Step("big_tokenizer", ("tokenizer", "train", f"--out={big}", *common, size)))
    compress = (
        "tokenizer",
        "compress",
        f"--tokenizer={big}",
        f"--vocab_size={settings.compact_vocab}",
        f"--out={epath.Path(compact).parent}",
    )
    return [*steps, Step("compact_tokenizer", (*compress, *common))]


def _arm_steps(ladder: Ladder, settings: Scale, parent: str) -> list[Step]:
    """A, B, C (and the parent) from scratch; D and E inherited from the parent, then D
    trained and E trained in rounds."""
    scratch = {"A": "arm_a", "B": "arm_b", "C": "arm_c", "parent": "parent"}
    steps = [
        Step(name, ladder.arms[key].train_args(ladder.workdir(key)))
        for key, name in scratch.items()
        if key in ladder.arms
    ]
    metric = f"InheritConfig.width_metric = '{settings.width_metric}'"
    for key in "DE":
        arm = ladder.arms[key]
        arm = dataclasses.replace(arm, gin_params=(metric, *arm.gin_params))
        steps.append(
            Step(f"arm_{key.lower()}_inherit", arm.inherit_args(ladder.workdir(key), parent))
        )
    steps.append(Step("arm_d", ("train", f"--workdir={ladder.workdir('D')}")))
    rounds = (
        f"--gin_param=RoundsConfig.num_rounds = {settings.rounds}",
        f"--gin_param=RoundsConfig.unit = '{settings.unit}'",
    )
    steps.append(Step("arm_e", ("train", f"--workdir={ladder.workdir('E')}", *rounds)))
    return steps


def command(step: Step, launcher: Sequence[str] = ()) -> list[str]:
    """The command line of `step`, after `launcher` when given (see arm.tinylm)."""
    return tinylm(step.args, launcher)


def done_marker(root: epath.Path, step: Step) -> epath.Path:
    return epath.Path(root) / "steps" / f"{step.name}.done"


def run(ladder: Ladder, launcher: Sequence[str] = ()) -> int:
    """Runs the steps not yet done, in order; returns 0, or the failing step's exit status."""
    for number, step in enumerate(ladder.steps, 1):
        head = f"[{number}/{len(ladder.steps)}] {step.name}"
        line = shlex.join(command(step, launcher))
        marker = done_marker(ladder.root, step)
        if marker.exists():
            print(f"{head}: done, skipped", flush=True)
            continue
        print(f"{head}: {line}", flush=True)
        code = runner.run_job(runner.job(head, [command(step, launcher)]))
        if code:
            print(f"{head}: rerun to continue", flush=True)
            return code
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(line + "\n")
    return 0


def _json_line(text: str) -> dict:
    """The JSON object a `tinylm ... --json` command printed last."""
    return json.loads(text.strip().splitlines()[-1])


def arm_info(arm: Arm) -> dict:
    """`tinylm info --json` of the arm's gin: parameter counts, the model's shape and the
    training tokens, computed without allocating."""
    return _json_line(runner.output(tinylm(("info", "--json", *arm.gin_flags()))))


Info = Callable[[Arm], dict]


def check_plan(ladder: Ladder, info: Info = arm_info) -> dict[str, dict]:
    """`info` of every arm; fails if the arms' training tokens differ or arm D's shape does
    not fit inside the recipe's parent (before any step spends time training)."""
    shapes = {name: info(arm) for name, arm in ladder.arms.items()}
    check_same_tokens({k: v for k, v in shapes.items() if k != "parent"})
    if "C+" in shapes and "parent" in shapes:
        needed = shapes["C"]["train_tokens"] + shapes["parent"]["train_tokens"]
        if shapes["C+"]["train_tokens"] < needed:
            raise ConfigError(
                f"arm C+ trains on {shapes['C+']['train_tokens']:,} tokens, fewer than C's plus "
                f"the parent's ({needed:,}); do not bind TrainConfig.num_steps for C+ alone"
            )
    if "parent" in shapes:
        child, parent = shapes["D"]["model"], shapes["parent"]["model"]
        larger = [f for f in ("d_model", "n_layers", "n_heads") if child[f] > parent[f]]
        if larger:
            raise ConfigError(
                f"arm D is larger than the parent in {larger}: {child} vs {parent}; shrink "
                "the recipe's deep_narrow.gin or enlarge its parent.gin"
            )
    return shapes


def dry_run(ladder: Ladder, launcher: Sequence[str] = (), info: Info = arm_info) -> None:
    """Prints every arm's size and training tokens (checked by `check_plan`), then every
    step's command; runs nothing."""
    for name, shape in check_plan(ladder, info).items():
        print(
            f"{name:>6}: {shape['total_params']:>15,} params "
            f"({shape['non_embedding_params']:,} non-embedding), "
            f"{shape['train_tokens']:,} training tokens"
        )
    for number, step in enumerate(ladder.steps, 1):
        print(
            f"[{number}/{len(ladder.steps)}] {step.name}\n  {shlex.join(command(step, launcher))}"
        )


def trained_tokens(workdir: epath.PathLike) -> int:
    """Tokens the run in `workdir` trained on: its last logged step × its tokens per step."""
    from tinylm_jax.workdir.load import tokens_per_step

    steps = layout.last_values(layout.read_metrics(workdir), "loss")
    return max(steps, default=0) * tokens_per_step(workdir)


def evaluate(workdir: epath.PathLike, eval_steps: int | None) -> dict:
    """`tinylm eval` of a trained workdir: held-out loss and bits per byte."""
    steps = () if eval_steps is None else (f"--eval_steps={eval_steps}",)
    return _json_line(runner.output(tinylm(("eval", f"--workdir={workdir}", *steps))))


def collect_row(ladder: Ladder, key: str, eval_steps: int | None, info: Info = arm_info) -> dict:
    """One trained arm's params, training tokens and held-out metrics."""
    workdir = ladder.workdir(key)
    shape = info(ladder.arms[key])
    row = {
        "params": shape["total_params"],
        "non_embedding_params": shape["non_embedding_params"],
        "train_tokens": trained_tokens(workdir),
    }
    if key != "parent":
        result = evaluate(workdir, eval_steps)
        row.update({k: result[k] for k in ("eval_bits_per_byte", "eval_loss")})
    return {**row, "workdir": str(workdir)}


def collect_rows(ladder: Ladder, eval_steps: int | None) -> tuple[dict[str, dict], dict | None]:
    """Rows of the arms A..E trained so far (a ladder midway reports its first rungs), and
    the parent's params and tokens (if the recipe trained it)."""
    trained = [key for key in ladder.arms if layout.is_trained(ladder.workdir(key))]
    rows = {key: collect_row(ladder, key, eval_steps) for key in ARMS if key in trained}
    if not rows:
        raise ConfigError(
            f"no arm of the ladder in {ladder.root} is trained yet; run `tinylm recipe run` "
            "with the same --root, --scale and gin first"
        )
    parent = None
    if "parent" in trained:
        row = collect_row(ladder, "parent", eval_steps)
        parent = {k: row[k] for k in ("params", "train_tokens")}
    return rows, parent


def report(ladder: Ladder, eval_steps: int | None) -> str:
    """Evaluates the trained arms, writes ROOT/report.json, report.md and ladder.png (every
    arm's curves); returns the Markdown."""
    from tinylm_jax.orchestration import plot

    rows, parent = collect_rows(ladder, eval_steps)
    runs = {f"{name} {FORMULAS[name]}": rows[name]["workdir"] for name in rows}
    plot.save(plot.curves_figure(runs), ladder.root / "ladder.png")
    write_report(ladder.root, rows, parent, plot_name="ladder.png")
    return (ladder.root / report_lib.MARKDOWN_FILE).read_text()
