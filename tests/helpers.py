"""Shared test helpers: tiny configs and gin parameter lists for short real runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

# A small real corpus (the first stdlib modules) and a matching small tokenizer.
TINY_DATA = [
    "DataConfig.dataset = 'python_stdlib'",
    "DataConfig.max_documents = 60",
    "DataConfig.vocab_size = 512",
    "DataConfig.validation_fraction = 0.05",
]


def tiny_run(steps: int = 4, batch_size: int = 8, seq_len: int = 32) -> list[str]:
    return TINY_DATA + [
        f"TrainConfig.num_steps = {steps}",
        f"TrainConfig.batch_size = {batch_size}",
        f"TrainConfig.seq_len = {seq_len}",
        "TrainConfig.log_every = 1",
        "TrainConfig.eval_steps = 2",
        "CheckpointConfig.async_save = False",
    ]


def read_metrics(workdir: str | Path) -> list[dict]:
    lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def train_losses(workdir: str | Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


def write_byte_level_bpe(directory: str | Path, texts: list[str], vocab_size: int) -> Path:
    """A byte-level BPE `tokenizer.json` trained on `texts` (`train_byte_level_bpe`: EOS and
    pad declared, no BOS, as GPT-2); returns the directory."""
    from tinylm_jax.data.tokenizer_hf import train_byte_level_bpe

    train_byte_level_bpe(texts, vocab_size, directory)
    return Path(directory)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a coordinator or a server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def xla_flags(devices: int) -> str:
    """XLA_FLAGS for a test process with `devices` virtual CPU devices.

    XLA:CPU aborts the process when a device thread waits too long at a collective's
    rendezvous (tens of seconds by default). Eight virtual devices on two busy cores can starve
    a thread that long (a test worker died that way in CI), so tests give collectives 5 minutes.
    """
    return (
        f"--xla_force_host_platform_device_count={devices}"
        " --xla_cpu_collective_call_terminate_timeout_seconds=300"
        " --xla_cpu_collective_timeout_seconds=300"
    )


def concurrent_digests(script: str, args: list[str], copies: int, env: dict, timeout: int) -> set:
    """Starts `copies` processes of `python -c script *args` together, asserts each exits 0,
    and returns the set of the `DIGEST ...` lines they printed (one set member: they agree)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    results = [p.communicate(timeout=timeout) for p in procs]
    digests = set()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
        lines = [line for line in out.splitlines() if line.startswith("DIGEST")]
        assert lines, f"no DIGEST line in:\n{out[-3000:]}"
        digests.update(lines)
    return digests
