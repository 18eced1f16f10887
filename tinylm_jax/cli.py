"""The `tinylm` command line: train, eval, sample, info, tokenizer."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tinylm_jax import config as config_lib
from tinylm_jax.model.config import ConfigError


def _add_gin_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gin_file",
        action="append",
        default=[],
        help="gin file (repeatable); looked up as given, then in configs/",
    )
    parser.add_argument(
        "--gin_param",
        action="append",
        default=[],
        help="binding such as 'ModelConfig.d_model = 512' (repeatable)",
    )


def _add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-process)")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--process_id", type=int)


def _workdir_config(workdir: str) -> Path:
    path = Path(workdir) / "config.gin"
    if not path.exists():
        raise ConfigError(
            f"{path} not found: --workdir must be a directory written by `tinylm train`"
        )
    return path


def cmd_train(args: argparse.Namespace) -> int:
    from tinylm_jax.parallel.distributed import maybe_initialize

    maybe_initialize(args.coordinator_address, args.num_processes, args.process_id)
    saved = Path(args.workdir) / "config.gin"
    # Resuming: the saved operative config first, so the run continues as it was configured.
    config_lib.parse(
        args.gin_file, args.gin_param, workdir_config=saved if saved.exists() else None
    )
    from tinylm_jax.train.loop import train

    train(args.workdir)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    config_lib.parse(args.gin_file, args.gin_param, workdir_config=_workdir_config(args.workdir))
    from tinylm_jax.train.loading import evaluate_workdir

    print(json.dumps(evaluate_workdir(args.workdir, args.eval_steps)))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    config_lib.parse(args.gin_file, args.gin_param, workdir_config=_workdir_config(args.workdir))
    from tinylm_jax.eval.generate import SamplingConfig
    from tinylm_jax.train.loading import sample_workdir

    sampling = SamplingConfig(
        args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    for result in sample_workdir(args.workdir, args.prompt, sampling):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"--- prompt: {result['prompt']!r}\n{result['prompt']}{result['completion']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.model.config import ModelConfig
    from tinylm_jax.model.counting import model_stats
    from tinylm_jax.train.loop import TrainConfig

    model_config = ModelConfig()
    stats = model_stats(model_config, args.seq_len or TrainConfig().seq_len).as_dict()
    if args.json:
        print(json.dumps(stats))
        return 0
    gib = 1024**3
    print(
        f"parameters        {stats['total_params']:>16,}\n"
        f"  embedding+head  {stats['embedding_params']:>16,}  "
        f"({100 * stats['embedding_share']:.2f}%)\n"
        f"  non-embedding   {stats['non_embedding_params']:>16,}\n"
        f"FLOPs per token   {stats['flops_per_token']:>16.4g}  (training, fwd+bwd)\n"
        f"params memory     {stats['param_bytes'] / gib:>16.3f} GiB\n"
        f"+ AdamW state     {stats['train_state_bytes'] / gib:>16.3f} GiB"
    )
    return 0


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.data.config import DataConfig
    from tinylm_jax.data.pipeline import train_tokenizer_for

    path = train_tokenizer_for(DataConfig(), args.out)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, resuming from the workdir if possible")
    train.add_argument("--workdir", required=True)
    _add_gin_flags(train)
    _add_distributed_flags(train)
    train.set_defaults(fn=cmd_train)

    evaluate = commands.add_parser("eval", help="held-out loss, perplexity, bits per byte")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument(
        "--eval_steps",
        type=int,
        default=None,
        help="batches to evaluate (default: the whole validation split)",
    )
    _add_gin_flags(evaluate)
    evaluate.set_defaults(fn=cmd_eval)

    sample = commands.add_parser("sample", help="generate text from a trained workdir")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--prompt", action="append", required=True)
    sample.add_argument("--max_new_tokens", type=int, default=64)
    sample.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    sample.add_argument("--top_k", type=int, default=0)
    sample.add_argument("--top_p", type=float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--json", action="store_true")
    _add_gin_flags(sample)
    sample.set_defaults(fn=cmd_sample)

    info = commands.add_parser("info", help="parameter counts, FLOPs and memory of a config")
    info.add_argument("--seq_len", type=int, default=None)
    info.add_argument("--json", action="store_true")
    _add_gin_flags(info)
    info.set_defaults(fn=cmd_info)

    tokenizer = commands.add_parser("tokenizer", help="SentencePiece tokenizers")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    tok_train = tokenizer_commands.add_parser("train", help="train one on DataConfig's corpus")
    tok_train.add_argument("--out", required=True, help="path of the .model to write")
    _add_gin_flags(tok_train)
    tok_train.set_defaults(fn=cmd_tokenizer_train)
    return parser


class _DropGinSearchNoise(logging.Filter):
    """gin logs every include-path candidate it tries and misses; only the outcome matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/gin/" not in record.pathname.replace("\\", "/")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropGinSearchNoise())
    for noisy in ("absl", "jax", "orbax", "grain", "etils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from tinylm_jax.data.errors import DataError

    try:
        return args.fn(args)
    except (ConfigError, DataError, FloatingPointError) as error:
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
