"""The one table of `benchmarks/device_check.sh`, from the NAME.json files it leaves in a dir.

python benchmarks/device_table.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GIB = 1024**3


def load(directory: Path, name: str) -> dict:
    path = directory / f"{name}.json"
    if not path.exists() or not path.read_text().strip():
        return {"failed": "missing"}
    return json.loads(path.read_text())


def _failed(*records: dict) -> str | None:
    bad = [str(r["failed"]) for r in records if "failed" in r]
    return f"failed ({', '.join(bad)}; see the .log)" if bad else None


def train_row(directory: Path, name: str) -> str:
    train, plan, peer = (load(directory, f"{kind}_{name}") for kind in ("train", "plan", "peer"))
    if "failed" in train:
        return f"| train {name} | {_failed(train)} | | | |"
    peak = train["peak_flops_per_device"] * train["num_devices"]
    peer_tps = peer.get("tokens_per_second")
    peer_cell = (
        f"{peer_tps:,.0f} tok/s, MFU {100 * train['flops_per_token'] * peer_tps / peak:.1f}%, "
        f"peak {peer['peak_memory_bytes'] / GIB:.1f} GiB"
        if peer_tps
        else _failed(peer)
    )
    ratio = f"{train['tokens_per_second'] / peer_tps:.2f}x" if peer_tps else ""
    planned = plan.get("peak_memory_bytes")
    plan_cell = f"plan {planned / GIB:.1f} GiB" if planned else f"plan {_failed(plan)}"
    return (
        f"| train {name} ({train['params'] / 1e6:,.0f}M, b{train['batch_size']} x "
        f"{train['seq_len']}, bf16) | {train['tokens_per_second']:,.0f} tok/s, "
        f"MFU {100 * train['mfu']:.1f}%, step {1e3 * train['step_time_s']:.0f} ms, peak "
        f"{train['peak_memory_bytes'] / GIB:.1f} GiB ({plan_cell}) | {peer_cell} | {ratio} | "
        f"compile {train['compile_s']:.0f}s |"
    )


def attention_row(directory: Path, seq: int) -> str:
    record = load(directory, f"attention_{seq}")
    if "failed" in record:
        return f"| attention seq {seq} | {_failed(record)} | | | |"
    point = record["points"][0]
    times = ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in point["median_s"].items())
    best = min(point["median_s"], key=point["median_s"].get)
    label = f"attention fwd+bwd seq {seq} x b{point['batch_size']}"
    return f"| {label} | {times} | | | fastest {best} |"


def decode_row(directory: Path, name: str, batch: int) -> str:
    mine = load(directory, f"decode_{name}_b{batch}")
    peer = load(directory, f"peer_decode_{name}_b{batch}") if name == "tinyllama" else {}
    if "failed" in mine:
        return f"| decode {name} b{batch} | {_failed(mine)} | | | |"
    peer_tps = peer.get("decode_tokens_per_second")
    peer_cell = (
        f"{peer_tps:,.0f} tok/s, prefill {1e3 * peer['prefill_seconds']:.1f} ms"
        if peer_tps
        else (_failed(peer) or "")
    )
    ratio = f"{mine['decode_tokens_per_second'] / peer_tps:.2f}x" if peer_tps else ""
    return (
        f"| decode {name} b{batch} ({mine['prompt_len']}+{mine['new_tokens']}, "
        f"{mine['compute_dtype']}) | {mine['decode_tokens_per_second']:,.0f} tok/s, prefill "
        f"{1e3 * mine['prefill_seconds']:.1f} ms, bandwidth "
        f"{100 * mine['bandwidth_utilisation']:.0f}% of "
        f"{mine['memory_bandwidth_bytes_per_second'] / 1e9:,.0f} GB/s | {peer_cell} | {ratio} | |"
    )


def table(directory: Path) -> str:
    device = next(
        (load(directory, f"train_{n}").get("device_kind") for n in ("demo", "125m", "tinyllama")),
        None,
    )
    rows = [
        f"device: {device or 'unknown'}",
        "| check | tinylm | peer (PyTorch / HF) | ratio | notes |",
        "|---|---|---|---|---|",
    ]
    rows += [train_row(directory, name) for name in ("demo", "125m", "tinyllama")]
    rows += [attention_row(directory, seq) for seq in (2048, 8192)]
    rows += [decode_row(directory, n, b) for n in ("demo", "tinyllama") for b in (1, 8)]
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
