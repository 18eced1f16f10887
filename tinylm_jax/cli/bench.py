"""`tinylm bench`: compiled train-step throughput, MFU, step times, compile time, memory; with
`--mode=decode`, prefill latency and KV-cache decode tokens/s."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_bench(commands) -> None:
    parser = commands.add_parser(
        "bench", help="compiled train-step throughput, MFU, step times, compile time, memory"
    )
    parser.add_argument(
        "--mode",
        choices=["train", "decode"],
        default="train",
        help="train: the train step; decode: prefill latency and greedy decode tokens/s",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup_steps", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic token batch")
    parser.add_argument(
        "--compile_only",
        action="store_true",
        help="compile the train step on abstract inputs (nothing allocated) and print XLA's "
        "memory plan instead of timing steps",
    )
    parser.add_argument("--batch_size", type=int, default=1, help="decode: prompts at once")
    parser.add_argument("--prompt_len", type=int, default=128, help="decode: prompt tokens")
    parser.add_argument("--new_tokens", type=int, default=128, help="decode: tokens generated")
    parser.add_argument("--repeats", type=int, default=3, help="decode: timed runs (median)")
    parser.add_argument(
        "--workdir", help="decode: a trained workdir whose params to use (default: random init)"
    )
    add_profile_flags(parser)
    common.add_gin_flags(parser)
    common.add_distributed_flags(parser)
    parser.set_defaults(fn=cmd_bench)


def add_profile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile_steps",
        default=None,
        help="A:B: a jax.profiler trace of the timed steps after step A up to step B "
        "(TensorBoard's profile plugin opens it)",
    )
    parser.add_argument(
        "--profile_dir",
        default=None,
        help="the TensorBoard log dir of --profile_steps' trace (default: ./tensorboard)",
    )


def cmd_bench(args: argparse.Namespace) -> int:
    if args.workdir and args.mode != "decode":
        from tinylm_jax.errors import ConfigError

        raise ConfigError("--workdir is read by --mode=decode only; the train bench uses gin")
    common.initialize_distributed(args)
    if args.mode == "decode" and args.workdir:
        config = common.workdir_run_config(args)
    else:
        config = common.run_config(args)
    common.use_compilation_cache(config)
    if args.mode == "decode":
        return _decode(args, config)
    from tinylm_jax.train.bench import bench, memory_plan, plan_summary, summary
    from tinylm_jax.train.profile import parse_steps

    profile = parse_steps(args.profile_steps)
    if args.compile_only:
        plan = memory_plan(config)
        print(plan_summary(plan))
        print(json.dumps(plan.as_dict()), flush=True)
        return 0
    result = bench(
        config,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        profile=profile,
        profile_dir=args.profile_dir or "tensorboard",
    )
    print(summary(result))
    print(json.dumps(result.as_dict()), flush=True)
    return 0


def _decode(args: argparse.Namespace, config) -> int:
    from tinylm_jax.eval.decode_bench import decode_bench, decode_summary

    if args.workdir:
        import jax

        from tinylm_jax.workdir.load import load_workdir

        run, params, _ = load_workdir(config, args.workdir)
        model, params = run.model, jax.device_get(params)
    else:
        import jax

        from tinylm_jax.engine.run import build_run
        from tinylm_jax.engine.state import init_state
        from tinylm_jax.model.byte_level import blank_token_bytes

        # A byte-level model decodes at the same cost whatever its byte table holds.
        run = build_run(
            config, blank_token_bytes(config.model) if config.model.uses_bytes else None
        )
        state = init_state(run.init_fn, args.seed, run.shardings)
        model, params = run.model, jax.device_get(state.params)
    result = decode_bench(
        model, params, args.batch_size, args.prompt_len, args.new_tokens, args.repeats, args.seed
    )
    print(decode_summary(result))
    print(json.dumps(result.as_dict()), flush=True)
    return 0
