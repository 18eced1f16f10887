"""The run's data, set up before the first step: prepared once per host, checked against the
run's config, the run files written beside it, and this process's batch iterator per round."""

from __future__ import annotations

import jax
import numpy as np
from etils import epath

from tinylm_jax import layout
from tinylm_jax.config.data import DataConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.data import pipeline
from tinylm_jax.data.tokenizer import Tokenizer
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.files import write_atomically
from tinylm_jax.train.prefetch import CheckpointableIterator


def prepare_data_once(config: DataConfig, seq_len: int) -> pipeline.PreparedData:
    """Prepares the dataset once per host: process 0 first, then the others reuse its cache."""
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        data = pipeline.prepare_data(config, seq_len)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("tinylm_prepare_data")
    if jax.process_index() != 0:
        data = pipeline.prepare_data(config, seq_len)
    return data


def check_data(data: pipeline.PreparedData, config: RunConfig) -> None:
    """Fails before the first step on data the run cannot use."""
    pipeline.check_vocab(data.tokenizer, config.model.vocab_size)
    if len(data.train) == 0:
        raise DataError(
            f"the training split of {data.stats['dataset']} holds no records; check "
            "DataConfig.dataset / DataConfig.paths"
        )
    if config.train.eval_steps and len(data.validation) == 0:
        raise ConfigError(
            f"the validation split of {data.stats['dataset']} is empty "
            f"(DataConfig.validation_fraction={config.data.validation_fraction} of "
            f"{data.stats['train']['documents']} documents): raise "
            "DataConfig.validation_fraction, add documents, or set TrainConfig.eval_steps = 0"
        )


def write_run_files(workdir: epath.Path, config: RunConfig, tokenizer: Tokenizer) -> None:
    """`config.gin` and the tokenizer's files, written atomically: a run killed at any moment
    leaves usable copies."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomically(layout.config_file(workdir), config.gin_config)
    tokenizer.save(workdir)


def make_train_iterator(
    data: pipeline.PreparedData,
    tc: TrainConfig,
    sequence_ids: np.ndarray | None = None,
    round_index: int = 1,
) -> CheckpointableIterator:
    """This process's batch iterator over `sequence_ids` (None: the whole split) for round
    `round_index`, whose shuffle is seeded apart from the other rounds'; see
    `TrainConfig.data_sharding`."""
    seed = tc.resolved_data_seed + round_index - 1
    if tc.data_sharding == "global":
        return pipeline.make_train_iterator(
            data, tc.batch_size, seed=seed, sequence_ids=sequence_ids
        )
    return pipeline.make_train_iterator(
        data,
        tc.batch_size // jax.process_count(),
        seed=seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        sequence_ids=sequence_ids,
    )
