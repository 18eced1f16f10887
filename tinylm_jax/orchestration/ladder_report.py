"""The PanGu-π Pro ladder's report: each arm's step against the one before it and against the
paper's (arXiv 2402.02791, Fig. 1), the compute-matched control C+, and the Markdown table."""

from __future__ import annotations

from etils import epath

from tinylm_jax.errors import ConfigError
from tinylm_jax.orchestration import report as report_lib

# The paper's ladder (average accuracy over its benchmarks) and each step's gain.
PAPER_AVERAGES = {"A": 42.41, "B": 44.11, "C": 46.53, "D": 49.79, "E": 51.28}
FORMULAS = {
    "A": "baseline (wide-shallow, big tokenizer, random init)",
    "B": "+ compact tokenizer",
    "C": "+ architecture (deeper, narrower)",
    "C+": "control: C on the parent's tokens + its own",
    "D": "+ parameter inheritance",
    "E": "+ multiple-round training",
}
ARMS = ("A", "B", "C", "C+", "D", "E")  # the report's order


def _before(name: str) -> str:
    """The arm a step is measured against: the rung below (C+ is a control beside C)."""
    return "C" if name == "C+" else chr(ord(name) - 1)


def gains(rows: dict[str, dict]) -> dict[str, dict]:
    """Each arm's step against the arm before it: the change of held-out bits per byte
    (lower is better; none while the arm before is not trained) beside the paper's
    average-accuracy gain (higher is better; none for C+, which the paper has not). D also
    carries `vs_control`: D − C+, what inheritance buys at equal total compute."""
    out = {}
    for name in [a for a in ARMS if a in rows]:
        before = _before(name)
        change = None
        if before in rows:
            change = rows[name]["eval_bits_per_byte"] - rows[before]["eval_bits_per_byte"]
        in_paper = name in PAPER_AVERAGES and name != "A"
        paper_gain = PAPER_AVERAGES[name] - PAPER_AVERAGES[before] if in_paper else None
        out[name] = {
            "bits_per_byte_change": change,
            "paper_average": PAPER_AVERAGES.get(name),
            "paper_gain": None if paper_gain is None else round(paper_gain, 2),
        }
        if name == "D" and "C+" in rows:
            out[name]["vs_control"] = (
                rows["D"]["eval_bits_per_byte"] - rows["C+"]["eval_bits_per_byte"]
            )
    return out


def check_same_tokens(rows: dict[str, dict]) -> None:
    """The rungs (not the C+ control, which adds the parent's tokens) train on equal tokens."""
    tokens = {name: row["train_tokens"] for name, row in rows.items() if name != "C+"}
    if len(set(tokens.values())) > 1:
        raise ConfigError(
            f"the ladder's arms must train on the same tokens; got {tokens}: give every arm "
            "the same TrainConfig.num_steps, batch_size and seq_len"
        )


def _signed(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _fixed(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def report_lines(rows: dict[str, dict], plot_name: str | None, parent: dict | None) -> list[str]:
    step_gains = gains(rows)
    lines = [
        "# PanGu-π Pro ladder",
        "",
        "Held-out bits per byte (lower is better; comparable across tokenizers) of every arm, "
        "each trained on the same tokens, beside the paper's average accuracy "
        "(arXiv 2402.02791, Fig. 1; higher is better).",
        "",
    ]
    columns = ["arm", "formula", "params", "non-embedding", "train tokens", "bits/byte", "change"]
    table = [
        [
            name,
            FORMULAS[name],
            f"{rows[name]['params']:,}",
            _count(rows[name].get("non_embedding_params")),
            f"{rows[name]['train_tokens']:,}",
            f"{rows[name]['eval_bits_per_byte']:.4f}",
            _signed(step_gains[name]["bits_per_byte_change"], 4),
            _fixed(step_gains[name]["paper_average"], 2),
            _signed(step_gains[name]["paper_gain"], 2),
        ]
        for name in step_gains
    ]
    lines += report_lib.table([*columns, "paper avg", "paper gain"], table)
    if "vs_control" in step_gains.get("D", {}):
        lines += [
            "",
            f"D − C+ = {step_gains['D']['vs_control']:+.4f} bits/byte: inheritance against C's "
            "model trained from random init on the parent's tokens plus its own (equal total "
            "compute).",
        ]
    if parent:
        lines += [
            "",
            f"The parent of arm D ({parent['params']:,} params) cost {parent['train_tokens']:,} "
            "training tokens on top of the arms' (PanGu inherited from an existing model).",
        ]
    if plot_name:
        lines += ["", f"![training curves]({plot_name})"]
    return lines


def write_report(
    root: epath.Path, rows: dict[str, dict], parent: dict | None, plot_name: str | None
) -> dict:
    """`report.json` and `report.md` under `root`; `rows` maps 'A'..'E' to params,
    train_tokens, eval_bits_per_byte and eval_loss."""
    check_same_tokens(rows)
    report = {"arms": rows, "gains": gains(rows), "formulas": FORMULAS, "parent": parent}
    report_lib.write(root, report, report_lines(rows, plot_name, parent))
    return report
