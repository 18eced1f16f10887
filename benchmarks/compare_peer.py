"""tinylm vs the PyTorch peer on the same config, alternating runs so machine noise cancels.

  python benchmarks/compare_peer.py --gin_file=experiments/demo.gin [--rounds 3] [--steps 20]
  python benchmarks/compare_peer.py --gin_file=experiments/demo.gin \
      --gin_file=models/bench_17m.gin --seq_lens=128,256,512,1024 [--tokens_per_batch=2048]

Each round runs `tinylm bench` and then `benchmarks/peer_torch.py` (order swapped on odd
rounds), each in its own subprocess so neither shares threads or warm caches with the other.
Prints one line per run, a summary, and ends with one JSON line: the median tokens/s of each
side, `ratio` = tinylm / peer of the medians, the per-round ratios, and MFU of both (the peer's
computed with tinylm's FLOPs per token and the peak tinylm measured on this host).

With `--seq_lens` it runs that comparison at each sequence length with the batch size that
keeps `--tokens_per_batch` tokens per step, prints a table, and ends with one JSON line of
every point and the geometric mean of the ratios.

With `--mode=decode` it compares decoding instead: `tinylm bench --mode=decode` against Hugging
Face `generate` on the same (exported) model, at each of `--batch_sizes` (benchmarks/
compare_decode.py):

  python benchmarks/compare_peer.py --mode=decode --gin_file=experiments/demo.gin \
      --batch_sizes=1,8 [--prompt_len=128] [--new_tokens=128] [--workdir=DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "peer_torch.py"


def last_json_line(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def run_side(command: list[str], env: dict[str, str], timeout: float) -> dict:
    proc = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        raise SystemExit(
            f"compare_peer: {' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return last_json_line(proc.stdout)


def compare(gin: list[str], args: argparse.Namespace) -> dict:
    """Alternating rounds of both sides on one config (gin flags); the summary dict."""
    steps = [f"--steps={args.steps}", f"--warmup_steps={args.warmup_steps}"]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    jax_env = dict(env, XLA_FLAGS=args.xla_flags)
    jax_env.setdefault("JAX_PLATFORMS", "cpu")
    peer_env = dict(env, JAX_PLATFORMS="cpu")  # the peer only parses gin; keep JAX off devices
    sides = {
        "tinylm": ([sys.executable, "-m", "tinylm_jax.cli", "bench", *gin, *steps], jax_env),
        "peer": (
            [sys.executable, str(PEER), *gin, *steps, f"--attn={args.attn}"]
            + [f"--optimizer={args.peer_optimizer}"],
            peer_env,
        ),
    }
    results: dict[str, list[dict]] = {"tinylm": [], "peer": []}
    for r in range(args.rounds):
        order = ("tinylm", "peer") if r % 2 == 0 else ("peer", "tinylm")
        for side in order:
            command, side_env = sides[side]
            result = run_side(command, side_env, args.timeout)
            results[side].append(result)
            print(
                f"round {r + 1} {side:>6}: {result['tokens_per_second']:>10,.0f} tokens/s  "
                f"step p50 {1e3 * result['step_time_p50_s']:8.1f} ms",
                flush=True,
            )

    tps = {side: [x["tokens_per_second"] for x in runs] for side, runs in results.items()}
    median = {side: statistics.median(values) for side, values in tps.items()}
    jax_last = results["tinylm"][-1]
    peak_total = jax_last["peak_flops_per_device"] * jax_last["num_devices"]
    summary = {
        "ratio": median["tinylm"] / median["peer"],
        "round_ratios": [a / b for a, b in zip(tps["tinylm"], tps["peer"], strict=True)],
        "tinylm_tokens_per_second": median["tinylm"],
        "peer_tokens_per_second": median["peer"],
        "tinylm_mfu": jax_last["flops_per_token"] * median["tinylm"] / peak_total,
        "peer_mfu": jax_last["flops_per_token"] * median["peer"] / peak_total,
        "tinylm_runs": tps["tinylm"],
        "peer_runs": tps["peer"],
        "tinylm_peak_rss_bytes": max(x["peak_rss_bytes"] for x in results["tinylm"]),
        "peer_peak_rss_bytes": max(x["peak_rss_bytes"] for x in results["peer"]),
        "params": jax_last["params"],
        "peer_params": results["peer"][-1]["params"],
        "batch_size": jax_last["batch_size"],
        "seq_len": jax_last["seq_len"],
        "rounds": args.rounds,
        "steps": args.steps,
        "peer": results["peer"][-1]["peer"],
    }
    print(
        f"tinylm {median['tinylm']:,.0f} tokens/s (MFU {100 * summary['tinylm_mfu']:.1f}%) vs "
        f"peer {median['peer']:,.0f} tokens/s (MFU {100 * summary['peer_mfu']:.1f}%): "
        f"ratio {summary['ratio']:.2f}x (median of {args.rounds} alternating rounds)",
        flush=True,
    )
    return summary


def grid(gin: list[str], seq_lens: list[int], args: argparse.Namespace) -> dict:
    """`compare` at each sequence length, `args.tokens_per_batch` tokens per step."""
    points = []
    for seq_len in seq_lens:
        if args.tokens_per_batch % seq_len:
            raise SystemExit(
                f"compare_peer: --tokens_per_batch={args.tokens_per_batch} is not a multiple of "
                f"sequence length {seq_len}"
            )
        batch_size = args.tokens_per_batch // seq_len
        print(f"== seq {seq_len} x batch {batch_size}", flush=True)
        shape = [
            f"--gin_param=TrainConfig.seq_len={seq_len}",
            f"--gin_param=TrainConfig.batch_size={batch_size}",
            f"--gin_param=ModelConfig.max_seq_len={max(seq_lens)}",
        ]
        points.append(compare(gin + shape, args))
    geomean = math.exp(statistics.fmean(math.log(p["ratio"]) for p in points))
    print("| seq x batch | tinylm tokens/s | peer tokens/s | ratio | round ratios |")
    print("|---|---|---|---|---|")
    for p in points:
        rounds = " / ".join(f"{r:.2f}" for r in p["round_ratios"])
        print(
            f"| {p['seq_len']} x {p['batch_size']} | {p['tinylm_tokens_per_second']:,.0f} | "
            f"{p['peer_tokens_per_second']:,.0f} | {p['ratio']:.2f}x | {rounds} |"
        )
    lowest = min(p["ratio"] for p in points)
    print(f"geometric mean of the ratios: {geomean:.2f}x; lowest {lowest:.2f}x")
    return {"geomean_ratio": geomean, "points": points}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"), help="peer attention")
    parser.add_argument(
        "--peer_optimizer",
        default="fused",
        choices=("fused", "foreach"),
        help="the peer's AdamW kernel (foreach: PyTorch's default)",
    )
    parser.add_argument(
        "--xla_flags",
        default="",
        help="XLA_FLAGS for the tinylm side (replaces the inherited value; default none)",
    )
    parser.add_argument(
        "--seq_lens",
        default="",
        help="comma-separated sequence lengths: compare at each (grid mode)",
    )
    parser.add_argument(
        "--tokens_per_batch", type=int, default=2048, help="grid mode: seq_len x batch_size"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--mode", choices=("train", "decode"), default="train")
    parser.add_argument("--batch_sizes", default="1,8", help="decode mode: batch sizes")
    parser.add_argument("--prompt_len", type=int, default=128, help="decode mode")
    parser.add_argument("--new_tokens", type=int, default=128, help="decode mode")
    parser.add_argument("--repeats", type=int, default=3, help="decode mode: runs per side")
    parser.add_argument("--workdir", help="decode mode: a trained workdir (default: random init)")
    parser.add_argument("--peer_threads", type=int, default=0, help="decode mode: torch threads")
    args = parser.parse_args(argv)

    gin = [f"--gin_file={f}" for f in args.gin_file] + [f"--gin_param={p}" for p in args.gin_param]
    if args.mode == "decode":
        from compare_decode import compare_decode

        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        )
        env.setdefault("JAX_PLATFORMS", "cpu")
        result = compare_decode(gin, args, env, run_side)
    elif args.seq_lens:
        result = grid(gin, [int(x) for x in args.seq_lens.split(",")], args)
    else:
        result = compare(gin, args)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
