"""The decoding peer: Hugging Face `generate` (greedy, its KV cache) on a Llama directory that
`tinylm export-hf` wrote, timed like `tinylm bench --mode=decode`.

  python benchmarks/peer_hf_decode.py --hf_dir=DIR [--batch_size=1] [--prompt_len=128] \
      [--new_tokens=128] [--repeats=3]
  python benchmarks/peer_hf_decode.py --make_hf_dir=DIR --gin_file=experiments/demo.gin

The first form prints one JSON line with `decode_tokens_per_second` (new tokens after the
first, across the batch, per second of `generate` minus its prefill) and `prefill_seconds`
(one forward pass over the prompts with `use_cache=True`), medians of `--repeats` runs. The
second writes the random-init params of a gin config, as `tinylm bench --mode=decode` draws
them (`--seed`), in `export-hf`'s Llama format (config.json + safetensors, no tokenizer), so
both sides decode the very same model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def make_hf_dir(out_dir: str, gin_files: list[str], gin_params: list[str], seed: int) -> None:
    import jax

    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.engine.run import build_run
    from tinylm_jax.engine.state import init_state
    from tinylm_jax.interop import llama, safetensors_io

    config = config_lib.parse(gin_files, gin_params)
    run = build_run(config)
    params = jax.device_get(init_state(run.init_fn, seed, run.shardings).params)
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf = llama.hf_config(config.model, bos_id=1, eos_id=2, pad_id=0)
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    safetensors_io.write_tensors(llama.to_hf(params, config.model), out)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype)
    model = LlamaForCausalLM.from_pretrained(args.hf_dir, torch_dtype=dtype).eval().to(device)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(args.seed)
    ids = torch.from_numpy(
        rng.integers(0, vocab, (args.batch_size, args.prompt_len)).astype(np.int64)
    )
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    N = args.new_tokens

    def prefill():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, use_cache=True)
        sync()

    def generate():
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=N,
                min_new_tokens=N,  # never stops early at EOS, like tinylm's bench
                do_sample=False,
                use_cache=True,
                pad_token_id=0,
            )
        sync()
        return out

    start = time.perf_counter()
    prefill()
    out = generate()
    warm_s = time.perf_counter() - start
    assert out.shape == (args.batch_size, args.prompt_len + N), out.shape
    prefill_s = _median_seconds(prefill, args.repeats)
    generate_s = _median_seconds(generate, args.repeats)
    decode_s = max(generate_s - prefill_s, 1e-9)
    return {
        "decode_tokens_per_second": args.batch_size * (N - 1) / decode_s,
        "prefill_seconds": prefill_s,
        "prefill_tokens_per_second": args.batch_size * args.prompt_len / prefill_s,
        "decode_step_seconds": decode_s / (N - 1),
        "generate_seconds": generate_s,
        "warmup_s": warm_s,
        "batch_size": args.batch_size,
        "prompt_len": args.prompt_len,
        "new_tokens": N,
        "repeats": args.repeats,
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": args.dtype,
        "device": str(device),
        "peer": f"transformers {__import__('transformers').__version__} generate, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"attn {model.config._attn_implementation}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--hf_dir", help="a Llama directory (tinylm export-hf) to decode with")
    parser.add_argument("--make_hf_dir", help="write a gin config's random init here and exit")
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    parser.add_argument("--dtype", default="float32", help="torch dtype of the weights, compute")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: its)")
    args = parser.parse_args(argv)
    if args.make_hf_dir:
        make_hf_dir(args.make_hf_dir, args.gin_file, args.gin_param, args.seed)
        return
    if not args.hf_dir:
        parser.error("--hf_dir (or --make_hf_dir) is required")
    print(json.dumps(bench(args)), flush=True)


if __name__ == "__main__":
    main()
