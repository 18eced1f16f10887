"""The `tinylm` command line: one subcommand per job (`tinylm --help` lists them)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence

from tinylm_jax import layout
from tinylm_jax.config import gin as config_lib
from tinylm_jax.errors import ConfigError


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
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run found by JAX's cluster auto-detection (TPU pods, SLURM)",
    )


def _workdir_run_config(args: argparse.Namespace):
    """The RunConfig of an existing workdir (its config.gin), with the flags' overrides."""
    from tinylm_jax.workdir.load import config_path

    return config_lib.parse(args.gin_file, args.gin_param, workdir_config=config_path(args.workdir))


def cmd_train(args: argparse.Namespace, hooks=None) -> int:

    from tinylm_jax.parallel.distributed import maybe_initialize

    maybe_initialize(
        args.coordinator_address,
        args.num_processes,
        args.process_id,
        heartbeat_timeout_seconds=args.heartbeat_timeout_seconds,
        auto_detect=args.distributed,
    )
    saved = layout.config_file(args.workdir)
    # Resuming: the saved operative config first, so the run continues as it was configured.
    config = config_lib.parse(
        args.gin_file, args.gin_param, workdir_config=saved if saved.exists() else None
    )
    from tinylm_jax.train.loop import PREEMPTED_EXIT_CODE, Preempted, train

    if config.data.tokenizer is not None:
        from tinylm_jax.data.tokenizer import load_tokenizer

        load_tokenizer(config.data.tokenizer)  # a bad tokenizer fails before data preparation
    try:
        train(config, args.workdir, hooks)
    except Preempted as preempted:
        print(f"tinylm train: {preempted}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    config = _workdir_run_config(args)
    from tinylm_jax.workdir.load import evaluate_workdir

    print(json.dumps(evaluate_workdir(config, args.workdir, args.eval_steps, args.task)))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from tinylm_jax.parallel.distributed import maybe_initialize

    maybe_initialize(
        args.coordinator_address, args.num_processes, args.process_id, auto_detect=args.distributed
    )
    config = _workdir_run_config(args)
    import jax

    from tinylm_jax.eval.score import write_scores
    from tinylm_jax.workdir.load import score_workdir

    scores = score_workdir(config, args.workdir, args.split, args.batch_size)
    if jax.process_index() == 0:
        write_scores(args.out, scores)
        summary = {
            "out": args.out,
            "split": args.split,
            "records": len(scores.tokens_N),
            "tokens": int(scores.tokens_N.sum()),
            "mean_loss": float(scores.nll_N.sum() / max(scores.tokens_N.sum(), 1)),
            "seconds": scores.seconds,
            "tokens_per_second": scores.tokens_per_second,
        }
        print(json.dumps(summary))
    return 0


def cmd_export_hf(args: argparse.Namespace) -> int:
    config = _workdir_run_config(args)
    from tinylm_jax.interop.export import export_workdir

    files = export_workdir(config.model, args.workdir, args.out)
    print(json.dumps({"out": args.out, "files": files}))
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    from tinylm_jax.interop import import_hf

    # The checkpoint fixes the architecture: its ModelConfig bindings come last.
    defaults, model = import_hf.gin_bindings(args.hf_dir, args.workdir)
    config = config_lib.parse(args.gin_file, defaults + args.gin_param + model)
    print(json.dumps(import_hf.import_hf(config, args.hf_dir, args.workdir)))
    return 0


def cmd_inherit(args: argparse.Namespace) -> int:
    from tinylm_jax.parallel.distributed import maybe_initialize
    from tinylm_jax.workdir.load import config_path

    maybe_initialize(
        args.coordinator_address, args.num_processes, args.process_id, auto_detect=args.distributed
    )
    # The parent's model from its own config.gin; the child's run is parsed last (from flags).
    parent = config_lib.parse(workdir_config=config_path(args.parent)).model
    config = config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.recipes.pangu.inherit import inherit

    print(json.dumps(inherit(config, parent, args.parent, args.workdir), indent=1))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    config = _workdir_run_config(args)
    from tinylm_jax.config.sampling import SamplingConfig
    from tinylm_jax.workdir.load import sample_workdir

    sampling = SamplingConfig(
        args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    for result in sample_workdir(config, args.workdir, args.prompt, sampling):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"--- prompt: {result['prompt']!r}\n{result['prompt']}{result['completion']}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from tinylm_jax.orchestration import plot

    labels = args.label or args.workdir
    if len(labels) != len(args.workdir):
        raise ConfigError(
            f"got {len(args.label)} --label for {len(args.workdir)} --workdir; give one per "
            "workdir or none"
        )
    runs = dict(zip(labels, args.workdir, strict=True))
    print(plot.save(plot.curves_figure(runs), args.out))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    config = config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.model.counting import model_stats

    stats = model_stats(config.model, args.seq_len or config.train.seq_len).as_dict()
    if args.json:
        # The config's shape and token budget too: orchestration plans runs from these.
        train_tokens = config.train.num_steps * config.train.tokens_per_step
        model = dataclasses.asdict(config.model)
        print(json.dumps({**stats, "train_tokens": train_tokens, "model": model}))
        return 0
    gib = 1024**3
    print(
        f"parameters        {stats['total_params']:>16,}\n"
        f"  embedding+head  {stats['embedding_params']:>16,}  "
        f"({100 * stats['embedding_share']:.2f}%)\n"
        f"  non-embedding   {stats['non_embedding_params']:>16,}\n"
        + "".join(f"    {k:<14}{v:>16,}\n" for k, v in stats["component_params"].items())
        + f"FLOPs per token   {stats['flops_per_token']:>16.4g}  (training, fwd+bwd)\n"
        f"params memory     {stats['param_bytes'] / gib:>16.3f} GiB\n"
        f"+ AdamW state     {stats['train_state_bytes'] / gib:>16.3f} GiB"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from tinylm_jax.parallel.distributed import maybe_initialize

    maybe_initialize(
        args.coordinator_address, args.num_processes, args.process_id, auto_detect=args.distributed
    )
    config = config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.train.bench import bench, memory_plan, plan_summary, summary

    if args.compile_only:
        plan = memory_plan(config)
        print(plan_summary(plan))
        print(json.dumps(plan.as_dict()), flush=True)
        return 0
    result = bench(config, steps=args.steps, warmup_steps=args.warmup_steps, seed=args.seed)
    print(summary(result))
    print(json.dumps(result.as_dict()), flush=True)
    return 0


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    config = config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.data.pipeline import train_tokenizer_for

    print(train_tokenizer_for(config.data, args.out))
    return 0


def cmd_tokenizer_compress(args: argparse.Namespace) -> int:
    config = config_lib.parse(args.gin_file, args.gin_param)
    from tinylm_jax.data.pipeline import train_tokenizer_for
    from tinylm_jax.recipes.pangu import tokenizer_compression

    report = tokenizer_compression.compress_corpus(
        config.data,
        args.tokenizer or train_tokenizer_for(config.data),
        args.out,
        vocab_size=args.vocab_size,
        coverage=args.coverage,
        model_config=config.model,
        sample_documents=args.sample_documents,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print(tokenizer_compression.format_report(report))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tinylm_jax.orchestration import sweep

    if args.sweep_command == "run":
        return sweep.run(args.spec, args.root, args.arm, args.dry_run, args.parallel, args.emit)
    return sweep.report(args.spec, args.root, args.arm)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help shows each flag's default."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:  # argparse exposes subparsers only through _actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _show_defaults(sub)


def cmd_recipe(args: argparse.Namespace) -> int:
    import shlex

    from tinylm_jax.orchestration import ladder as ladder_lib

    ladder = ladder_lib.pangu_ladder(
        args.root,
        args.scale,
        args.gin_file,
        args.gin_param,
        args.parent,
        args.tokenizer,
        args.big_vocab,
        args.compact_vocab,
    )
    launcher = shlex.split(args.launcher) if args.launcher else ()
    if args.recipe_command == "run" and args.dry_run:
        ladder_lib.dry_run(ladder, launcher)
        return 0
    if args.recipe_command == "run":
        code = ladder_lib.run(ladder, launcher)
        if code:
            return code
    print(ladder_lib.report(ladder, args.eval_steps), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tinylm_jax.config.sampling import SamplingConfig

    parser = argparse.ArgumentParser(prog="tinylm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, resuming from the workdir if possible")
    train.add_argument("--workdir", required=True)
    _add_gin_flags(train)
    _add_distributed_flags(train)
    train.add_argument(
        "--heartbeat_timeout_seconds",
        type=int,
        default=None,
        help="multi-process: exit this long after a peer process dies (default: JAX's, 100)",
    )
    train.set_defaults(fn=cmd_train)

    evaluate = commands.add_parser(
        "eval", help="held-out loss, perplexity, bits per byte; multiple-choice tasks"
    )
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument(
        "--eval_steps",
        type=int,
        default=None,
        help="batches to evaluate (default: the whole validation split; 0 skips held-out eval)",
    )
    evaluate.add_argument(
        "--task",
        action="append",
        default=[],
        help='multiple-choice JSONL task ({"context", "choices", "answer"} per line; repeatable)',
    )
    _add_gin_flags(evaluate)
    evaluate.set_defaults(fn=cmd_eval)

    score = commands.add_parser(
        "score",
        help="per-record losses of a split under a trained workdir (JSONL: id, loss, tokens)",
    )
    score.add_argument("--workdir", required=True)
    score.add_argument("--split", default="train", choices=["train", "validation"])
    score.add_argument("--out", required=True, help="JSONL file to write (local or gs://)")
    score.add_argument(
        "--batch_size", type=int, default=None, help="global batch (default: the eval batch size)"
    )
    _add_gin_flags(score)
    _add_distributed_flags(score)
    score.set_defaults(fn=cmd_score)

    sample = commands.add_parser("sample", help="generate text from a trained workdir")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--prompt", action="append", required=True, help="repeatable")
    defaults = SamplingConfig()
    sample.add_argument(
        "--max_new_tokens", type=int, default=defaults.max_new_tokens, help="tokens to generate"
    )
    sample.add_argument(
        "--temperature",
        type=float,
        default=defaults.temperature,
        help="softmax temperature; 0 is greedy (which makes small models loop)",
    )
    sample.add_argument(
        "--top_k", type=int, default=defaults.top_k, help="keep the k likeliest tokens; 0: all"
    )
    sample.add_argument(
        "--top_p", type=float, default=defaults.top_p, help="nucleus: smallest set with mass p"
    )
    sample.add_argument(
        "--seed", type=int, default=defaults.seed, help="sampling seed (same seed, same text)"
    )
    sample.add_argument(
        "--json", action="store_true", help="one JSON object per prompt: prompt, completion, ids"
    )
    _add_gin_flags(sample)
    sample.set_defaults(fn=cmd_sample)

    plot = commands.add_parser(
        "plot", help="train loss and held-out bits per byte against tokens, one line per run"
    )
    plot.add_argument("--workdir", action="append", required=True, help="repeatable")
    plot.add_argument(
        "--label", action="append", default=[], help="legend entry per workdir (default: path)"
    )
    plot.add_argument("--out", required=True, help="PNG file to write (local or gs://)")
    plot.set_defaults(fn=cmd_plot)

    info = commands.add_parser("info", help="parameter counts, FLOPs and memory of a config")
    info.add_argument("--seq_len", type=int, default=None)
    info.add_argument("--json", action="store_true")
    _add_gin_flags(info)
    info.set_defaults(fn=cmd_info)

    bench = commands.add_parser(
        "bench", help="compiled train-step throughput, MFU, step times, compile time, memory"
    )
    bench.add_argument("--steps", type=int, default=20, help="timed steps")
    bench.add_argument("--warmup_steps", type=int, default=2, help="untimed steps after compiling")
    bench.add_argument("--seed", type=int, default=0, help="seed of the synthetic token batch")
    bench.add_argument(
        "--compile_only",
        action="store_true",
        help="compile the train step on abstract inputs (nothing allocated) and print XLA's "
        "memory plan instead of timing steps",
    )
    _add_gin_flags(bench)
    _add_distributed_flags(bench)
    bench.set_defaults(fn=cmd_bench)

    tokenizer = commands.add_parser(
        "tokenizer", help="SentencePiece training; compression (also of a BPE tokenizer.json)"
    )
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    tok_train = tokenizer_commands.add_parser("train", help="train one on DataConfig's corpus")
    tok_train.add_argument("--out", required=True, help="path of the .model to write")
    _add_gin_flags(tok_train)
    tok_train.set_defaults(fn=cmd_tokenizer_train)
    tok_compress = tokenizer_commands.add_parser(
        "compress",
        help="PanGu-style pruning to the most frequent pieces; writes tokenizer.model (or "
        "tokenizer.json), id_map.npy/.json and report.json",
    )
    tok_compress.add_argument(
        "--tokenizer",
        help="the big .model or byte-level BPE tokenizer.json (or its directory) to prune "
        "(default: DataConfig's tokenizer)",
    )
    target = tok_compress.add_mutually_exclusive_group(required=True)
    target.add_argument("--vocab_size", type=int, help="exact size of the compressed tokenizer")
    target.add_argument(
        "--coverage", type=float, help="smallest size whose pieces cover this fraction of tokens"
    )
    tok_compress.add_argument("--out", required=True, help="output directory")
    tok_compress.add_argument(
        "--sample_documents",
        type=int,
        default=2000,
        help="training documents re-encoded to measure tokens per byte before/after",
    )
    tok_compress.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_gin_flags(tok_compress)
    tok_compress.set_defaults(fn=cmd_tokenizer_compress)

    sweep = commands.add_parser("sweep", help="ablation sweeps from an ml_collections spec")
    sweep_commands = sweep.add_subparsers(dest="sweep_command", required=True)
    for name, text in [
        ("run", "train every arm (resuming started ones)"),
        ("report", "final metrics of every arm as a table"),
    ]:
        sub = sweep_commands.add_parser(name, help=text)
        sub.add_argument("--spec", required=True, help="Python file with get_config()")
        sub.add_argument("--root", default="runs/sweeps", help="arms go to ROOT/NAME/ARM")
        sub.add_argument("--arm", action="append", default=[], help="only these arms")
        if name == "run":
            sub.add_argument("--dry_run", action="store_true", help="print the commands only")
            sub.add_argument(
                "--parallel", type=int, default=1, help="runs (trials) trained at once"
            )
            sub.add_argument(
                "--emit",
                choices=["slurm", "commands"],
                help="print the next runs as a SLURM job array script or a command list "
                "instead of training (er_ucb: one wave of --parallel trials per call)",
            )
        sub.set_defaults(fn=cmd_sweep)
    recipe = commands.add_parser(
        "recipe", help="a whole recipe (the PanGu-π Pro ladder) as resumable steps with a report"
    )
    recipe_commands = recipe.add_subparsers(dest="recipe_command", required=True)
    for name, text in [
        ("run", "run the steps not done yet (a rerun continues), then write the report"),
        ("report", "evaluate the trained arms and write report.md / report.json"),
    ]:
        sub = recipe_commands.add_parser(name, help=text)
        sub.add_argument("--recipe", default="pangu_ladder", choices=["pangu_ladder"])
        sub.add_argument("--root", required=True, help="every step's output goes under ROOT")
        sub.add_argument(
            "--scale", default="tiny", choices=["tiny", "1b"], help="tiny: ~45 min on 2 CPU cores"
        )
        sub.add_argument("--parent", help="a trained parent workdir instead of training one")
        sub.add_argument("--tokenizer", help="a big .model instead of training one on the corpus")
        sub.add_argument(
            "--big_vocab", type=int, help="the big tokenizer's size (default: the scale's)"
        )
        sub.add_argument(
            "--compact_vocab", type=int, help="the compressed tokenizer's size (default: scale's)"
        )
        sub.add_argument(
            "--eval_steps", type=int, default=None, help="eval batches per arm (None: all)"
        )
        sub.add_argument(
            "--launcher",
            help="prefix of every step on a cluster, e.g. 'launch/tpu_pod.sh TPU ZONE --'",
        )
        if name == "run":
            sub.add_argument(
                "--dry_run", action="store_true", help="print shapes and commands only"
            )
        _add_gin_flags(sub)
        sub.set_defaults(fn=cmd_recipe)
    export_hf = commands.add_parser(
        "export-hf", help="write a workdir as a Hugging Face LlamaForCausalLM directory"
    )
    export_hf.add_argument("--workdir", required=True)
    export_hf.add_argument("--out", required=True, help="new directory for the HF files")
    _add_gin_flags(export_hf)
    export_hf.set_defaults(fn=cmd_export_hf)

    import_hf = commands.add_parser(
        "import-hf", help="turn a local Hugging Face Llama-family checkpoint into a workdir"
    )
    import_hf.add_argument("--hf_dir", required=True, help="config.json + safetensors (+ index)")
    import_hf.add_argument("--workdir", required=True, help="new workdir to write")
    _add_gin_flags(import_hf)
    import_hf.set_defaults(fn=cmd_import_hf)

    inherit = commands.add_parser(
        "inherit",
        help="a step-0 child workdir from a larger trained parent (layer selection, pruning)",
    )
    inherit.add_argument("--parent", required=True, help="workdir of `train` or `import-hf`")
    inherit.add_argument("--workdir", required=True, help="new child workdir to write")
    _add_gin_flags(inherit)
    _add_distributed_flags(inherit)
    inherit.set_defaults(fn=cmd_inherit)
    _show_defaults(parser)
    return parser


class _DropGinSearchNoise(logging.Filter):
    """gin logs every include-path candidate it tries and misses; only the outcome matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/gin/" not in record.pathname.replace("\\", "/")


def main(argv: Sequence[str] | None = None, train_hooks=None) -> int:
    """Runs one `tinylm` command; `train_hooks` (a `TrainHooks`) are for tests only."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropGinSearchNoise())
    for noisy in ("absl", "jax", "orbax", "grain", "etils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from tinylm_jax.errors import DataError

    try:
        return args.fn(args, train_hooks) if args.command == "train" else args.fn(args)
    except (ConfigError, DataError, FloatingPointError) as error:
        print(f"tinylm {args.command}: error: {error}", file=sys.stderr)
        return 2


