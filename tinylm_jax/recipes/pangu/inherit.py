"""`tinylm inherit`: a child workdir initialized from a larger trained parent (PanGu-pi Pro
parameter inheritance, arXiv 2402.02791, Sec. 3.3).

Steps, each on the run's mesh:
  1. checks that need no model (shapes, head grouping, tokenizers, output dir);
  2. depth: the child's `n_layers` parent layers (`InheritConfig.layer_selection`);
  3. width: importance of every hidden channel, head / kv group and FFN neuron of the
     depth-pruned parent (the network the child is cut from), by `InheritConfig.width_metric`
     on calibration batches of the training split tokenized by the parent's tokenizer;
  4. the child's params: slices of the parent's (`recipe/pruning.py`), embedding / head rows
     carried through the `id_map` of a compressed tokenizer when one is given;
  5. held-out loss of parent, child and a random-init child; a step-0 workdir holding
     `config.gin`, the child's tokenizer, the checkpoint and `inheritance.json` (the report).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import pathlib
from collections.abc import Iterator

import jax
import numpy as np
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer, load_tokenizer
from tinylm_jax.engine import checkpoint as ckpt
from tinylm_jax.engine.run import Run, build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.eval.bits_per_byte import token_byte_lengths
from tinylm_jax.eval.heldout import evaluate
from tinylm_jax.files import write_atomically
from tinylm_jax.parallel import preemption
from tinylm_jax.parallel.batch import to_global
from tinylm_jax.recipes.pangu import importance as importance_lib
from tinylm_jax.recipes.pangu import masks, pruning, vocab_mapping
from tinylm_jax.workdir.load import check_new_workdir, tokenizer_of, write_initial_workdir

SHAPE_FIELDS = (
    "vocab_size",
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "ffn_dim",
    "tie_embeddings",
)


@dataclasses.dataclass(frozen=True)
class Tokenizers:
    parent: Tokenizer
    child: Tokenizer
    id_map: np.ndarray | None  # parent id -> child id (or -1); None: the same tokenizer


def resolve_tokenizers(config: RunConfig, parent: ModelConfig, parent_workdir) -> Tokenizers:
    """The parent's and child's tokenizers; DataError / ConfigError if they cannot match.

    The child's is DataConfig.tokenizer, else the id map directory's tokenizer, else the
    parent's.
    """
    parent_path = epath.Path(parent_workdir)
    parent_tok = tokenizer_of(parent_path)
    id_map = None
    child_path = config.data.tokenizer
    if config.inherit.id_map:
        id_map = vocab_mapping.load_id_map(config.inherit.id_map)
        map_dir = pathlib.Path(config.inherit.id_map).expanduser()
        map_dir = map_dir if map_dir.is_dir() else map_dir.parent
        child_path = child_path or str(map_dir)
    child_tok = load_tokenizer(child_path) if child_path else parent_tok
    child = config.model
    if id_map is None:
        if child_tok.fingerprint != parent_tok.fingerprint:
            raise DataError(
                f"the child's tokenizer ({child_tok.path}) is not the parent's ({parent_path}); "
                "unset DataConfig.tokenizer to keep the parent's, or give the compressed "
                "tokenizer's directory as InheritConfig.id_map"
            )
        if child.vocab_size != parent.vocab_size:
            raise ConfigError(
                f"ModelConfig.vocab_size={child.vocab_size} differs from the parent's "
                f"{parent.vocab_size} while the tokenizer is the same; set {parent.vocab_size} "
                "(or give a compressed tokenizer's InheritConfig.id_map)"
            )
        return Tokenizers(parent_tok, child_tok, None)
    if len(id_map) != parent_tok.vocab_size:
        raise DataError(
            f"InheritConfig.id_map maps {len(id_map)} old ids but the parent's tokenizer has "
            f"{parent_tok.vocab_size} pieces; compress the parent's tokenizer ({parent_path})"
        )
    kept = vocab_mapping.check_id_map(id_map)
    if child_tok.vocab_size != kept:
        raise DataError(
            f"the child's tokenizer ({child_tok.path}) has {child_tok.vocab_size} pieces but "
            f"the id map keeps {kept}; use the tokenizer written with that id map"
        )
    pipeline.check_vocab(child_tok, child.vocab_size)
    return Tokenizers(parent_tok, child_tok, id_map)


def calibration_batches(run: Run, data: pipeline.PreparedData, seed: int) -> Iterator[dict]:
    """Endless training batches of `TrainConfig.batch_size` rows, as global arrays."""
    iterator = pipeline.make_train_iterator(
        data,
        run.config.train.batch_size // jax.process_count(),
        seed=seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    for batch in iterator:
        batch.pop("ids", None)
        yield to_global(batch, run.mesh, run.rules)


def width_importance(
    run: Run, params: dict, batches: Iterator[dict] | None, config: RunConfig
) -> tuple[pruning.Importance, dict, dict | None]:
    """(importance, extra report entries, trained weights or None) of the depth-pruned parent
    `run` / `params`; `batches` (calibration data) may be None for the metrics that need
    none. Only 'learnable_mask_joint' trains the weights the child then inherits."""
    ic, metric = config.inherit, config.inherit.width_metric
    if metric == "random":
        return importance_lib.random_importance(run.config.model, ic.seed), {}, None
    if metric in ("l1", "l2"):
        return importance_lib.weight_importance(run, params, metric), {}, None
    if batches is None:
        raise ValueError(f"InheritConfig.width_metric={metric!r} needs calibration batches")
    if metric in ("learnable_mask", "learnable_mask_joint"):
        joint = ic.mask_weight_learning_rate if metric == "learnable_mask_joint" else None
        return masks.learn_masks(
            run,
            params,
            batches,
            config.model,
            ic.mask_steps,
            ic.mask_learning_rate,
            ic.seed,
            weight_learning_rate=joint,
        )
    calibration = list(itertools.islice(batches, ic.calibration_batches))
    if metric in ("taylor", "taylor_pooled"):
        pooled = metric == "taylor_pooled"
        return importance_lib.taylor_importance(run, params, calibration, pooled), {}, None
    return importance_lib.activation_importance(run, params, calibration), {}, None


def _count(params) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def _shape(cfg: ModelConfig) -> dict:
    shape = {k: getattr(cfg, k) for k in SHAPE_FIELDS}
    shape.update(
        n_kv_heads=cfg.resolved_n_kv_heads,
        head_dim=cfg.resolved_head_dim,
        ffn_dim=cfg.resolved_ffn_dim,
    )
    return shape


def _heldout(run: Run, params: dict, data: pipeline.PreparedData, steps: int) -> dict:
    byte_lengths = token_byte_lengths(data.tokenizer, run.config.model.vocab_size)
    result = evaluate(run, params, data, byte_lengths, steps)
    return {"loss": result["eval_loss"], "bits_per_byte": result["eval_bits_per_byte"]}


def _heldout_report(
    config: RunConfig,
    child_tokenizer: Tokenizer,
    parent: tuple[Run, dict, pipeline.PreparedData | None],
    child: tuple[Run, dict],
) -> dict:
    """Held-out loss and bits per byte of the parent, the inherited child and a random-init
    child (the init `tinylm train` would start from); `parent` is (run, params, data) and
    `child` (run, params)."""
    tc = config.train
    parent_run, parent_params, parent_data = parent
    if parent_data is None:
        raise ValueError("the held-out report needs the parent's data")
    child_run, child_params = child
    child_data = pipeline.prepare_data(
        dataclasses.replace(config.data, tokenizer=child_tokenizer.path), tc.seq_len
    )
    if len(child_data.validation) == 0:
        raise ConfigError(
            "the validation split is empty; raise DataConfig.validation_fraction or set "
            "TrainConfig.eval_steps = 0"
        )
    with run_context(child_run):
        random_params = init_state(child_run.init_fn, tc.seed, child_run.shardings).params
    return {
        "parent": _heldout(parent_run, parent_params, parent_data, tc.eval_steps),
        "child_inherited": _heldout(child_run, child_params, child_data, tc.eval_steps),
        "child_random_init": _heldout(child_run, random_params, child_data, tc.eval_steps),
        "eval_steps": tc.eval_steps,
    }


def inherit(
    config: RunConfig, parent: ModelConfig, parent_workdir: epath.PathLike, workdir: epath.PathLike
) -> dict:
    """Writes the child workdir for `config` (the child's run) from `parent_workdir` (whose
    model is `parent`); returns the report, also written as `WORKDIR/inheritance.json`."""
    ic, child, tc = config.inherit, config.model, config.train
    check_new_workdir(workdir)
    pruning.group_merge(parent, child)
    tokenizers = resolve_tokenizers(config, parent, parent_workdir)
    if ic.layer_selection != "block_influence":
        layers = pruning.select_layers(
            ic.layer_selection, parent.n_layers, child.n_layers, ic.layers
        )
    # Importance runs unrolled (per-layer activations); scan_layers changes no numerics.
    parent_flat = parent.replace(scan_layers=False)
    parent_run = build_run(config.replace(model=parent_flat))
    host_params, parent_step = ckpt.load_params(parent_workdir)
    host_params = pruning.unstack_layers(host_params, parent.n_layers)
    parent_params = jax.device_put(host_params, parent_run.shardings.params)
    parent_data, batches = _parent_data(config, parent, parent_run, tokenizers.parent)
    report: dict = {}
    if ic.layer_selection == "block_influence":
        layers, report["block_influence"] = _block_influence_layers(
            config, parent, parent_run, parent_params, batches
        )

    cut = parent_flat.replace(n_layers=child.n_layers)
    cut_run = build_run(config.replace(model=cut)) if cut != parent_flat else parent_run
    cut_host = pruning.take_layers(host_params, layers)
    cut_params = jax.device_put(cut_host, cut_run.shardings.params)
    logging.info("width importance (%s) of the depth-pruned parent", ic.width_metric)
    importance, extra, trained = width_importance(cut_run, cut_params, batches, config)
    del cut_params  # frees the depth-pruned parent's device copy before the child's run
    if trained is not None:  # masks trained jointly with the weights: prune those weights
        cut_host = trained
    selection = pruning.select(importance, layers, cut, child)
    child_params = pruning.prune_params(cut_host, cut, child, selection)
    if tokenizers.id_map is not None:
        child_params = vocab_mapping.remap_vocab_params(
            child_params, tokenizers.id_map, child.vocab_size
        )

    child_run = build_run(config)
    heldout = {}
    if tc.eval_steps:
        heldout = _heldout_report(
            config,
            tokenizers.child,
            (parent_run, parent_params, parent_data),
            (child_run, jax.device_put(child_params, child_run.shardings.params)),
        )
    report.update(
        {
            "parent": {
                "workdir": str(parent_workdir),
                "step": parent_step,
                "shape": _shape(parent),
                "params": _count(host_params),
            },
            "child": {
                "workdir": str(workdir),
                "shape": _shape(child),
                "params": _count(child_params),
            },
            "layer_selection": ic.layer_selection,
            "width_metric": ic.width_metric,
            "parent_layers": list(layers),
            "importance_kept": pruning.kept_fractions(importance, selection),
            "id_map": ic.id_map,
            "heldout": heldout,
            **extra,
        }
    )
    inherited_from = {"inherited_from": str(parent_workdir), "inherited_step": parent_step}
    _write_child(child_run, child_params, workdir, tokenizers.child, inherited_from, report)
    return report


def _parent_data(
    config: RunConfig, parent: ModelConfig, parent_run: Run, tokenizer: Tokenizer
) -> tuple[pipeline.PreparedData | None, Iterator[dict] | None]:
    """The parent's data and calibration batches, or (None, None) when neither the width
    metric nor the held-out report needs data."""
    ic, tc = config.inherit, config.train
    if not (ic.needs_data or tc.eval_steps):
        return None, None
    parent_data = pipeline.prepare_data(
        dataclasses.replace(config.data, tokenizer=tokenizer.path), tc.seq_len
    )
    pipeline.check_vocab(parent_data.tokenizer, parent.vocab_size)
    if len(parent_data.train) == 0 and ic.needs_data:
        raise DataError(f"the training split of {parent_data.stats['dataset']} is empty")
    return parent_data, calibration_batches(parent_run, parent_data, ic.seed)


def _block_influence_layers(
    config: RunConfig, parent: ModelConfig, parent_run: Run, parent_params, batches
) -> tuple[tuple[int, ...], list]:
    """(the parent layers with the highest block influence, the influence [L] for the report)."""
    ic = config.inherit
    influence_L = importance_lib.block_influence(
        parent_run, parent_params, list(itertools.islice(batches, ic.calibration_batches))
    )
    layers = pruning.select_layers(
        ic.layer_selection, parent.n_layers, config.model.n_layers, influence_L=influence_L
    )
    return layers, influence_L.round(6).tolist()


def _write_child(
    child_run: Run, child_params, workdir, tokenizer: Tokenizer, inherited_from: dict, report: dict
) -> None:
    """The step-0 child workdir: its config.gin pointing at the child's own tokenizer copy,
    the tokenizer, the checkpoint (metadata: `inherited_from`) and the report."""
    config = child_run.config
    child_tokenizer = epath.Path(workdir) / tokenizer.file_name
    if "://" not in str(child_tokenizer):
        child_tokenizer = child_tokenizer.absolute()
    gin_config = (
        config.gin_config
        + f"\n# tinylm inherit: the child's own tokenizer\nDataConfig.tokenizer = "
        f"'{child_tokenizer}'\n"
    )
    written = dataclasses.replace(child_run, config=config.replace(gin_config=gin_config))
    metadata = {"tokenizer_fingerprint": tokenizer.fingerprint, **inherited_from}
    with preemption.deferred():  # a child has its report, or is not written (a rerun redoes it)
        write_initial_workdir(written, child_params, workdir, tokenizer, metadata)
        write_atomically(layout.inheritance_file(workdir), json.dumps(report, indent=1) + "\n")
