"""Forward + backward time of the attention implementations at the lengths people train.

  python benchmarks/attention_kernels.py [--seq_lens 128,512,1024,2048] [--tokens 2048] \
      [--heads 6] [--kv_heads 6] [--head_dim 64] [--block_sizes 64,128,256] [--repeats 5] \
      [--dtype bfloat16] [--cudnn]

Each point is one layer's causal, document-masked attention on `--tokens` tokens per batch
(batch = tokens / seq_len); implementations run alternately, and the median of `--repeats`
timed calls of each is printed, with the ratio to XLA's dense kernel. Ends with a JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax.model.attention import causal_attention


def _fwd_bwd(implementation: str, block_size: int):
    def loss(q, k, v, segment_ids):
        out = causal_attention(q, k, v, segment_ids, implementation, block_size)
        return jnp.sum(out * out)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seq_lens", default="128,512,1024,2048")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv_heads", type=int, default=6)
    parser.add_argument("--head_dim", type=int, default=64)
    parser.add_argument("--block_sizes", default="64,128,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cudnn", action="store_true", help="also time cuDNN's fused kernel (GPU, half precision)"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args(argv)
    dtype = jnp.dtype(args.dtype)

    results = []
    for seq_len in (int(x) for x in args.seq_lens.split(",")):
        B = max(1, args.tokens // seq_len)
        keys = jax.random.split(jax.random.key(0), 3)
        q = jax.random.normal(keys[0], (B, seq_len, args.heads, args.head_dim), dtype)
        k, v = (
            jax.random.normal(x, (B, seq_len, args.kv_heads, args.head_dim), dtype)
            for x in keys[1:]
        )
        segment_ids = jnp.ones((B, seq_len), jnp.int32)
        kernels = {"xla": _fwd_bwd("xla", 0)}
        if args.cudnn:
            kernels["cudnn"] = _fwd_bwd("cudnn", 0)
        for block in (int(x) for x in args.block_sizes.split(",")):
            if block <= seq_len:
                kernels[f"blockwise/{block}"] = _fwd_bwd("blockwise", block)
        times: dict[str, list[float]] = {name: [] for name in kernels}
        for fn in kernels.values():
            jax.block_until_ready(fn(q, k, v, segment_ids))  # compile
        for _ in range(args.repeats):
            for name, fn in kernels.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(q, k, v, segment_ids))
                times[name].append(time.perf_counter() - start)
        medians = {name: float(np.median(t)) for name, t in times.items()}
        for name, seconds in medians.items():
            speedup = medians["xla"] / seconds
            print(
                f"seq {seq_len:>5} x batch {B:>3} {name:>14}: {1e3 * seconds:8.1f} ms  "
                f"({speedup:.2f}x xla)",
                flush=True,
            )
        results.append({"seq_len": seq_len, "batch_size": B, "median_s": medians})
    print(json.dumps({"points": results}))
    return {"points": results}


if __name__ == "__main__":
    main()
