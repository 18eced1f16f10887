"""`tinylm data prepare`: the whole data preparation (corpus, tokenizer, packed and sharded
records) as an Apache Beam pipeline (or, with `--runner=none`, on this host without Beam),
written once for every host of every run to read through `DataConfig.prepared`."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common
from tinylm_jax.errors import DataError

INSTALL = (
    "pip install 'tinylm_jax[beam]' (and 'apache-beam[gcp]' for Dataflow), or prepare on "
    "this host without Beam with --runner=none"
)
SINGLE_HOST = "none"


def add_data(commands) -> None:
    parser = commands.add_parser("data", help="prepare a dataset once for many runs and hosts")
    data_commands = parser.add_subparsers(dest="data_command", required=True)
    prepare = data_commands.add_parser(
        "prepare",
        help="tokenize and pack DataConfig's corpus at TrainConfig.seq_len on Apache Beam",
        description="Options after `--` go to Beam unchanged (e.g. --project, --region, "
        "--temp_location for Dataflow; --flink_master or --spark_master_url).",
    )
    prepare.add_argument(
        "--out", required=True, help="prepared-dataset dir (local, shared, or gs://)"
    )
    prepare.add_argument(
        "--runner",
        default="DirectRunner",
        help="Beam runner: DirectRunner (local processes), DataflowRunner, FlinkRunner, "
        f"SparkRunner, ...; or {SINGLE_HOST!r}: this host's single-host path, without Beam",
    )
    prepare.add_argument(
        "--num_workers", type=int, default=1, help="worker processes (DirectRunner) or workers"
    )
    common.add_gin_flags(prepare)
    prepare.add_argument("beam_args", nargs=argparse.REMAINDER, help="-- then Beam options")
    prepare.set_defaults(fn=cmd_data_prepare)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    config = common.run_config(args)
    beam_args = [a for a in args.beam_args if a != "--"]
    if args.runner == SINGLE_HOST:
        from tinylm_jax.data import prepare_single_host

        if beam_args:
            raise DataError(f"--runner={SINGLE_HOST} takes no Beam options; got {beam_args}.")
        manifest = prepare_single_host.prepare(config.data, config.train.seq_len, args.out)
    else:
        try:
            from tinylm_jax.data import beam_prepare
        except ImportError as e:
            raise DataError(f"`tinylm data prepare` needs Apache Beam ({e}); {INSTALL}") from e
        manifest = beam_prepare.prepare(
            config.data,
            config.train.seq_len,
            args.out,
            runner=args.runner,
            num_workers=args.num_workers,
            beam_args=beam_args,
        )
    summary = {
        s: {k: v[k] for k in ("documents", "tokens", "records")}
        for s, v in manifest["splits"].items()
    }
    print(json.dumps({"prepared": args.out, "fingerprint": manifest["fingerprint"], **summary}))
    return 0
