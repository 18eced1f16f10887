"""Flags and config loading shared by the commands: gin files and bindings, the multi-process
flags, and a run's config composed from a workdir's saved `config.gin` and the flags.

Imports nothing heavy at module level, so `tinylm --help` stays light: JAX is imported by a
handler when it runs (parsing gin imports it, through ModelConfig's dtypes)."""

from __future__ import annotations

import argparse


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
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


def add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator_address", help="host:port of process 0 (multi-process)")
    parser.add_argument("--num_processes", type=int, help="processes in the run (multi-process)")
    parser.add_argument("--process_id", type=int, help="this process's rank, 0-based")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run found by JAX's cluster auto-detection (TPU pods, SLURM)",
    )


def initialize_distributed(args: argparse.Namespace, **options) -> None:
    """Joins the multi-process run the distributed flags describe (if any); `options` go to
    `maybe_initialize` (e.g. heartbeat_timeout_seconds)."""
    from tinylm_jax.parallel.distributed import maybe_initialize

    maybe_initialize(
        args.coordinator_address,
        args.num_processes,
        args.process_id,
        auto_detect=args.distributed,
        **options,
    )


def run_config(args: argparse.Namespace, workdir_config=None):
    """The RunConfig of the flags' gin files and bindings, after `workdir_config` (a saved
    config.gin) when given."""
    from tinylm_jax.config import gin as config_lib

    return config_lib.parse(args.gin_file, args.gin_param, workdir_config=workdir_config)


def workdir_run_config(args: argparse.Namespace):
    """The RunConfig of an existing workdir (its config.gin), with the flags' overrides."""
    from tinylm_jax.workdir.load import config_path

    return run_config(args, workdir_config=config_path(args.workdir))


def use_compilation_cache(config) -> None:
    """Turns on JAX's persistent compilation cache for a command that compiles (train, eval,
    score, sample, bench): see `tinylm_jax.engine.compilation_cache`."""
    from tinylm_jax.engine import compilation_cache

    compilation_cache.enable(config.train, config.data)
