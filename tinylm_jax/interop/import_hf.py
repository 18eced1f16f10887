"""`tinylm import-hf`: a local Llama-family Hugging Face checkpoint as a tinylm workdir.

The workdir is what `tinylm train` writes: `config.gin` (ModelConfig from the HF config.json,
plus `DataConfig.tokenizer` pointing at the copied `tokenizer.model`), `tokenizer.model` and an
Orbax checkpoint at step 0 whose optimizer state is freshly initialized. `tinylm sample/eval`
read it as is; `tinylm train --workdir=DIR` continues pretraining from it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tinylm_jax import config as config_lib
from tinylm_jax.data.config import DataConfig
from tinylm_jax.data.tokenizer import Tokenizer, check_vocab
from tinylm_jax.interop import llama, safetensors_io
from tinylm_jax.model.config import ConfigError
from tinylm_jax.train import checkpoint as ckpt
from tinylm_jax.train.optimizer import OptimizerConfig, make_optimizer
from tinylm_jax.train.state import TrainState

log = logging.getLogger(__name__)


def read_hf_config(hf_dir: str | Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{path} not found: --hf_dir must be a Hugging Face model directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error})") from None


def gin_bindings(hf_dir: str | Path, workdir: str | Path) -> tuple[list[str], list[str]]:
    """(defaults the user may override, ModelConfig bindings that must match the checkpoint)."""
    fields = llama.model_fields(read_hf_config(hf_dir), str(Path(hf_dir) / "config.json"))
    model = [f"ModelConfig.{k} = {v!r}" for k, v in fields.items()]
    defaults = []
    if (Path(hf_dir) / "tokenizer.model").exists():
        tokenizer = (Path(workdir) / "tokenizer.model").absolute()
        defaults.append(f"DataConfig.tokenizer = {str(tokenizer)!r}")
    return defaults, model


def import_hf(hf_dir: str | Path, workdir: str | Path) -> dict:
    """Writes the workdir; gin must hold `gin_bindings(hf_dir, workdir)` (and any overrides)."""
    from tinylm_jax.train.loop import build_run, run_context

    hf_dir, workdir = Path(hf_dir), Path(workdir)
    checkpoints = ckpt.checkpoint_dir(workdir)
    if checkpoints.exists() and any(checkpoints.iterdir()):
        raise ConfigError(f"{workdir} already holds checkpoints; choose a new --workdir")
    reader = safetensors_io.TensorReader(hf_dir)
    run = build_run()
    params = llama.from_hf(reader.names, reader.read, run.model_config, str(hf_dir))

    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    if (hf_dir / "tokenizer.model").exists():
        tokenizer = Tokenizer.from_file(hf_dir / "tokenizer.model")
        check_vocab(tokenizer, run.model_config.vocab_size)
        shutil.copyfile(hf_dir / "tokenizer.model", workdir / "tokenizer.model")
    else:
        log.warning(
            "%s has no SentencePiece tokenizer.model; put one at %s before `tinylm sample`, "
            "`eval` or `train` (and bind DataConfig.tokenizer to it)",
            hf_dir,
            workdir / "tokenizer.model",
        )

    with run_context(run):
        state = _state_with(run, params)
    checkpoint_config = ckpt.CheckpointConfig()
    manager = ckpt.make_manager(workdir, checkpoint_config)
    metadata = {
        "tokenizer_fingerprint": tokenizer.fingerprint if tokenizer else None,
        "imported_from": str(hf_dir.absolute()),
    }
    ckpt.save(manager, state, None, metadata, force=True)
    manager.wait_until_finished()
    manager.close()
    DataConfig()  # so the operative config records the tokenizer binding
    config_lib.write_operative_config(workdir / "config.gin")
    return {
        "workdir": str(workdir),
        "params": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
        "tokenizer": str(workdir / "tokenizer.model") if tokenizer else None,
    }


def _state_with(run, params: dict) -> TrainState:
    """Step 0 with `params`, and the optimizer state and rng `tinylm train` would start with.

    Cheaper than `init_state` + replacing params: nothing but the optimizer state is computed.
    """
    tx, _ = make_optimizer(OptimizerConfig(), run.train_config.num_steps)
    _, state_rng = jax.random.split(jax.random.key(run.train_config.seed))  # as make_init_fn

    def fresh(params: dict) -> TrainState:
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=jax.random.key_data(state_rng),
        )

    params = jax.device_put(params, run.shardings.params)
    return jax.jit(fresh, out_shardings=run.shardings)(params)
