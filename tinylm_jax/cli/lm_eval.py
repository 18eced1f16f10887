"""`tinylm lm-eval`: lm-evaluation-harness tasks on a workdir, no export and no PyTorch model
(the harness's `simple_evaluate` with the `tinylm` model); the results JSON goes into the
workdir.

`python -m tinylm_jax.cli.lm_eval ...` is the harness's own command line (`lm_eval`) with the
`tinylm` model registered: `--model tinylm --model_args workdir=DIR,batch_size=8`.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_lm_eval(commands) -> None:
    parser = commands.add_parser(
        "lm-eval", help="lm-evaluation-harness tasks on a workdir (needs the [eval] extra)"
    )
    parser.add_argument("--workdir", required=True, help="a trained (or imported) workdir")
    parser.add_argument(
        "--tasks", required=True, help="comma-separated harness task (or group) names"
    )
    parser.add_argument(
        "--include_path", default=None, help="a directory of extra task YAMLs for the harness"
    )
    parser.add_argument(
        "--num_fewshot", type=int, default=None, help="few-shot examples; None: the task's own"
    )
    parser.add_argument(
        "--limit", type=float, default=None, help="examples per task (a fraction if < 1)"
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="requests per batch, rounded up to the batch devices; "
        "None: TrainConfig.eval_batch_size",
    )
    parser.add_argument(
        "--log_samples", action="store_true", help="keep every request's output in the JSON"
    )
    parser.add_argument(
        "--gin_param",
        action="append",
        default=[],
        help="binding over the workdir's config, e.g. 'MeshConfig.data = 1' (repeatable)",
    )
    parser.set_defaults(fn=cmd_lm_eval)


def cmd_lm_eval(args: argparse.Namespace) -> int:
    from tinylm_jax.workdir.load import config_path

    config_path(args.workdir)  # a missing workdir fails before the harness loads
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    _import_adapter()  # fails with the install command without the [eval] extra
    import jax
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable

    from tinylm_jax import layout
    from tinylm_jax.errors import ConfigError
    from tinylm_jax.files import write_atomically

    manager = TaskManager(include_path=args.include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" or in {args.include_path}" if args.include_path else ""
        raise ConfigError(
            f"unknown lm-eval task(s) {unknown}: not among the harness's tasks{where}; "
            "`lm_eval ls tasks` lists them, --include_path adds a directory of task YAMLs"
        )
    model_args = {"workdir": args.workdir, "gin_param": ";".join(args.gin_param)}
    if args.batch_size is not None:
        model_args["batch_size"] = str(args.batch_size)
    results = lm_eval.simple_evaluate(
        model="tinylm",
        model_args=model_args,
        tasks=tasks,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        task_manager=manager,
        log_samples=args.log_samples,
    )
    if results is None or jax.process_index() != 0:  # every process ran; one writes
        return 0
    import time

    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
    out = layout.lm_eval_results_file(args.workdir, stamp)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps(results, indent=2, default=handle_non_serializable))
    print(json.dumps({"results": results["results"], "out": str(out)}, default=str))
    return 0


def harness_main(argv: list[str] | None = None) -> None:
    """The harness's own command line (`lm_eval ...`) with the `tinylm` model registered."""
    from tinylm_jax.errors import ConfigError, DataError

    saved = sys.argv
    if argv is not None:  # the harness's parser reads (and edits) sys.argv itself
        sys.argv = [saved[0], *argv]
    try:
        _import_adapter()
        from lm_eval.__main__ import cli_evaluate

        cli_evaluate()
    except (ConfigError, DataError) as error:  # a bad workdir or config: what and how to fix
        print(f"lm_eval: error: {error}", file=sys.stderr)
        sys.exit(2)
    finally:
        sys.argv = saved


def _import_adapter() -> None:
    import tinylm_jax.interop.lm_harness  # noqa: F401  (registers the `tinylm` model)


if __name__ == "__main__":
    harness_main()
