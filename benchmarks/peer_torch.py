"""The peer: the same Llama model and AdamW step in Hugging Face `transformers` + PyTorch.

  python benchmarks/peer_torch.py --gin_file=experiments/demo.gin [--steps 20] [--attn sdpa]

Reads the model, batch, sequence length and optimizer from the same gin files `tinylm bench`
takes, builds `LlamaForCausalLM` from an equivalent `LlamaConfig` (float32, untied or tied
head, GQA, SwiGLU, RMSNorm, RoPE theta), and times a full training step on one synthetic batch
of random tokens: forward, token-weighted cross entropy, backward, global-norm clipping, AdamW
(decay masked like tinylm's: no decay on norms unless `decay_norms`), LR schedule step. Ends
with one JSON line holding the same keys as `tinylm bench` (MFU is left to the comparison
script, which knows the JAX host's measured peak).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def load_configs(gin_files: list[str], gin_params: list[str]):
    """(ModelConfig, TrainConfig, OptimizerConfig) exactly as `tinylm bench` would see them."""
    from tinylm_jax.config import gin as config_lib

    logging.disable(logging.ERROR)  # gin logs every include-path candidate it misses
    try:
        config = config_lib.parse(gin_files, gin_params)
    finally:
        logging.disable(logging.NOTSET)
    return config.model, config.train, config.optimizer


def llama_config(model_config, attn: str):
    """The `LlamaConfig` of the same architecture (tinylm's RoPE is HF's `rotate_half` layout)."""
    from transformers import LlamaConfig

    mc = model_config
    if mc.activation != "swiglu":
        raise SystemExit(f"peer_torch: LlamaForCausalLM has SwiGLU only, not {mc.activation!r}")
    return LlamaConfig(
        vocab_size=mc.vocab_size,
        hidden_size=mc.d_model,
        intermediate_size=mc.resolved_ffn_dim,
        num_hidden_layers=mc.n_layers,
        num_attention_heads=mc.n_heads,
        num_key_value_heads=mc.resolved_n_kv_heads,
        head_dim=mc.resolved_head_dim,
        hidden_act="silu",
        max_position_embeddings=mc.max_seq_len,
        initializer_range=mc.init_std,
        rms_norm_eps=mc.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": mc.rope_theta},
        tie_word_embeddings=mc.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        use_cache=False,
        attn_implementation=attn,
    )


def lr_multipliers(opt_config, num_steps: int, first_steps: int) -> np.ndarray:
    """tinylm's own schedule for a `num_steps` run, its first steps evaluated up front, as
    multipliers of the peak rate (so the timed loop runs no JAX)."""
    from tinylm_jax.engine.optimizer import make_schedule

    schedule = make_schedule(opt_config, num_steps)
    steps = range(min(num_steps, first_steps))
    return np.asarray([float(schedule(i)) for i in steps]) / opt_config.learning_rate


def make_optimizer(model: torch.nn.Module, opt_config, fused: bool) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_norm = "norm" in name
        is_embedding = "embed_tokens" in name or "lm_head" in name
        skip = (is_norm and not opt_config.decay_norms) or (
            is_embedding and not opt_config.decay_embeddings
        )
        (no_decay if skip else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": opt_config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=opt_config.learning_rate,
        betas=(opt_config.b1, opt_config.b2),
        eps=opt_config.eps,
        fused=fused,
        foreach=None if fused else True,
    )


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gin_file", action="append", default=[])
    parser.add_argument("--gin_param", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup_steps", type=int, default=2)
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    parser.add_argument(
        "--optimizer", default="fused", choices=("fused", "foreach"), help="AdamW kernel"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument(
        "--bf16", action="store_true", help="autocast to bfloat16 (float32 params, like tinylm's)"
    )
    return parser.parse_args(argv)


def time_steps(
    step: Callable[[], float], compile_first: bool, warmup_steps: int, steps: int
) -> tuple[float, list[float], float]:
    """(compile seconds, the clock before and after each of `steps` timed steps, last loss)."""
    compile_s = 0.0
    if compile_first:  # the first step compiles; count it as compilation, like tinylm's
        start = time.perf_counter()
        step()
        compile_s = time.perf_counter() - start
    for _ in range(warmup_steps):
        step()
    times = [time.perf_counter()]
    loss = float("nan")
    for _ in range(steps):
        loss = step()
        times.append(time.perf_counter())
    return compile_s, times, loss


def summarize(
    args: argparse.Namespace,
    model: torch.nn.Module,
    times: list[float],
    loss: float,
    compile_s: float,
    init_s: float,
    B: int,
    L: int,
) -> dict:
    """The JSON result, with the keys `tinylm bench` prints, of `args.steps` timed steps."""
    intervals = np.diff(times)
    elapsed = times[-1] - times[0]
    tokens_per_step = B * L
    return {
        "tokens_per_second": args.steps * tokens_per_step / elapsed,
        "mfu": None,
        "step_time_s": elapsed / args.steps,
        "step_time_p50_s": float(np.percentile(intervals, 50)),
        "step_time_p90_s": float(np.percentile(intervals, 90)),
        "compile_s": compile_s,
        "init_s": init_s,
        "peak_memory_bytes": (
            torch.cuda.max_memory_allocated() if torch.cuda.is_available() else peak_rss_bytes()
        ),
        "memory_source": "torch.cuda.max_memory_allocated"
        if torch.cuda.is_available()
        else "process_peak_rss",
        "peak_rss_bytes": peak_rss_bytes(),
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "batch_size": B,
        "seq_len": L,
        "tokens_per_step": tokens_per_step,
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": loss,
        "peer": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "attn_implementation": args.attn,
            "optimizer": args.optimizer,
            "compiled": args.compile,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "bf16_autocast": args.bf16,
        },
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_config, train_config, opt_config = load_configs(args.gin_file, args.gin_param)
    multipliers = lr_multipliers(
        opt_config, train_config.num_steps, args.steps + args.warmup_steps + 1
    )

    from transformers import LlamaForCausalLM

    start = time.perf_counter()
    device = torch.device(args.device)
    model = LlamaForCausalLM(llama_config(model_config, args.attn)).float().train().to(device)
    optimizer = make_optimizer(model, opt_config, fused=args.optimizer == "fused")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: multipliers[min(i, len(multipliers) - 1)]
    )
    B, L, V = train_config.batch_size, train_config.seq_len, model_config.vocab_size
    generator = np.random.default_rng(args.seed)
    tokens = torch.from_numpy(generator.integers(0, V, (B, L + 1), dtype=np.int64))
    tokens = tokens.to(device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    positions = torch.arange(L, device=device).expand(B, L)
    weights = torch.ones(B, L, device=device)
    init_s = time.perf_counter() - start

    forward = torch.compile(model) if args.compile else model

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = forward(input_ids=inputs, position_ids=positions).logits.float()
        losses = F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction="none")
        loss = (losses * weights.view(-1)).sum() / weights.sum().clamp(min=1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt_config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt_config.grad_clip)
        optimizer.step()
        scheduler.step()
        return float(loss.detach())

    compile_s, times, loss = time_steps(step, args.compile, args.warmup_steps, args.steps)
    result = summarize(args, model, times, loss, compile_s, init_s, B, L)
    print(
        f"peer torch: {result['params']:,} params | {result['tokens_per_second']:,.0f} tokens/s | "
        f"step mean {1e3 * result['step_time_s']:.1f} ms, "
        f"p50 {1e3 * result['step_time_p50_s']:.1f} ms | "
        f"peak RSS {result['peak_rss_bytes'] / 2**20:,.1f} MiB"
    )
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
