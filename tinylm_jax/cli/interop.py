"""`tinylm export-hf` and `tinylm import-hf`: a workdir as a Hugging Face LlamaForCausalLM
directory, and a local Llama-family checkpoint as a workdir."""

from __future__ import annotations

import argparse
import json

from tinylm_jax.cli import common


def add_export_hf(commands) -> None:
    parser = commands.add_parser(
        "export-hf", help="write a workdir as a Hugging Face LlamaForCausalLM directory"
    )
    parser.add_argument("--workdir", required=True, help="the run to export")
    parser.add_argument("--out", required=True, help="new directory for the HF files")
    common.add_gin_flags(parser)
    parser.set_defaults(fn=cmd_export_hf)


def cmd_export_hf(args: argparse.Namespace) -> int:
    config = common.workdir_run_config(args)
    from tinylm_jax.interop.export import export_workdir

    files = export_workdir(config.model, args.workdir, args.out)
    print(json.dumps({"out": args.out, "files": files}))
    return 0


def add_import_hf(commands) -> None:
    parser = commands.add_parser(
        "import-hf", help="turn a local Hugging Face Llama-family checkpoint into a workdir"
    )
    parser.add_argument(
        "--hf_dir",
        required=True,
        help="directory with config.json + safetensors (+ index), or a Hub id org/name[@rev] "
        "fetched into (or, with HF_HUB_OFFLINE=1, read from) the Hugging Face cache",
    )
    parser.add_argument("--workdir", required=True, help="new workdir to write")
    common.add_gin_flags(parser)
    parser.set_defaults(fn=cmd_import_hf)


def cmd_import_hf(args: argparse.Namespace) -> int:
    from tinylm_jax.config import gin as config_lib
    from tinylm_jax.data import hub
    from tinylm_jax.interop import import_hf

    hf_dir = hub.resolve(args.hf_dir, hub.CHECKPOINT_FILES, "--hf_dir")
    bindings = import_hf.run_bindings(hf_dir, args.workdir, args.gin_param)
    config = config_lib.parse(args.gin_file, bindings)
    print(json.dumps(import_hf.import_hf(config, hf_dir, args.workdir)))
    return 0
