"""`compare_peer.py --mode=decode`: `tinylm bench --mode=decode` against Hugging Face `generate`
on the same model (`peer_hf_decode.py`), alternating runs so machine noise cancels.

Without `--workdir` both sides decode the gin config's random init (seed 0), which
`peer_hf_decode.py --make_hf_dir` writes in `export-hf`'s format; with `--workdir`, tinylm
reads the workdir and the peer the directory `tinylm export-hf` makes of it. Each
`--batch_sizes` point ends with a summary; the last line is JSON of every point.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = HERE / "peer_hf_decode.py"


def hf_dir(gin: list[str], args: argparse.Namespace, env: dict, scratch: str) -> str:
    """The peer's Llama directory of the compared model."""
    out = str(Path(scratch) / "hf")
    if args.workdir:
        command = [sys.executable, "-m", "tinylm_jax.cli", "export-hf", f"--workdir={args.workdir}"]
        command += [f"--out={out}"]
    else:
        command = [sys.executable, str(PEER), f"--make_hf_dir={out}", *gin]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode:
        raise SystemExit(f"compare_peer: {' '.join(command)} failed:\n{proc.stderr[-4000:]}")
    return out


def compare_decode(gin: list[str], args: argparse.Namespace, env: dict, run_side) -> dict:
    """Alternating rounds at each batch size; {'points': [...]} with ratios of the medians."""
    points = []
    with tempfile.TemporaryDirectory(prefix="tinylm-decode-peer-") as scratch:
        directory = hf_dir(gin, args, env, scratch)
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            shape = [
                f"--batch_size={batch}",
                f"--prompt_len={args.prompt_len}",
                f"--new_tokens={args.new_tokens}",
                f"--repeats={args.repeats}",
            ]
            source = [f"--workdir={args.workdir}"] if args.workdir else []
            tinylm_cmd = [sys.executable, "-m", "tinylm_jax.cli", "bench", "--mode=decode"]
            sides = {
                "tinylm": [*tinylm_cmd, *gin, *source, *shape],
                "peer": [sys.executable, str(PEER), f"--hf_dir={directory}", *shape]
                + ([f"--threads={args.peer_threads}"] if args.peer_threads else []),
            }
            points.append(_rounds(sides, batch, args, env, run_side))
    print(
        "| batch | tinylm decode tok/s | peer decode tok/s | ratio | tinylm prefill ms | "
        "peer prefill ms | prefill ratio | tinylm bandwidth util. |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        print(
            f"| {p['batch_size']} | {p['tinylm_decode_tokens_per_second']:,.0f} | "
            f"{p['peer_decode_tokens_per_second']:,.0f} | {p['decode_ratio']:.2f}x | "
            f"{1e3 * p['tinylm_prefill_seconds']:.1f} | {1e3 * p['peer_prefill_seconds']:.1f} | "
            f"{p['prefill_speedup']:.2f}x | {100 * p['tinylm_bandwidth_utilisation']:.0f}% |"
        )
    return {"points": points}


def _rounds(sides: dict, batch: int, args: argparse.Namespace, env: dict, run_side) -> dict:
    results: dict[str, list[dict]] = {"tinylm": [], "peer": []}
    for r in range(args.rounds):
        for side in ("tinylm", "peer") if r % 2 == 0 else ("peer", "tinylm"):
            result = run_side(sides[side], env, args.timeout)
            results[side].append(result)
            print(
                f"batch {batch} round {r + 1} {side:>6}: "
                f"{result['decode_tokens_per_second']:>9,.1f} decode tokens/s, "
                f"prefill {1e3 * result['prefill_seconds']:.1f} ms",
                flush=True,
            )
    med = {
        (side, key): statistics.median(x[key] for x in runs)
        for side, runs in results.items()
        for key in ("decode_tokens_per_second", "prefill_seconds")
    }
    last = results["tinylm"][-1]
    return {
        "batch_size": batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "decode_ratio": med["tinylm", "decode_tokens_per_second"]
        / med["peer", "decode_tokens_per_second"],
        "prefill_speedup": med["peer", "prefill_seconds"] / med["tinylm", "prefill_seconds"],
        "tinylm_decode_tokens_per_second": med["tinylm", "decode_tokens_per_second"],
        "peer_decode_tokens_per_second": med["peer", "decode_tokens_per_second"],
        "tinylm_prefill_seconds": med["tinylm", "prefill_seconds"],
        "peer_prefill_seconds": med["peer", "prefill_seconds"],
        "round_decode_ratios": [
            a["decode_tokens_per_second"] / b["decode_tokens_per_second"]
            for a, b in zip(results["tinylm"], results["peer"], strict=True)
        ],
        "tinylm_bandwidth_utilisation": last["bandwidth_utilisation"],
        "memory_bandwidth_bytes_per_second": last["memory_bandwidth_bytes_per_second"],
        "params": last["params"],
        "peer_params": results["peer"][-1]["params"],
        "rounds": args.rounds,
        "peer": results["peer"][-1]["peer"],
    }
