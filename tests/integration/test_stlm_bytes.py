"""A byte model of the released STLM variant through the command line: it trains, logs its
reconstruction loss beside the loss it is part of, evaluates and samples."""

import pytest

from tests.helpers import read_metrics, tiny_run
from tinylm_jax.cli import main as cli

STLM_BYTES = [
    "ModelConfig.tie_embeddings = False",
    "ModelConfig.input_embedding = 'byte_pooled'",
    "ModelConfig.output_head = 'bytes'",
    "ModelConfig.byte_variant = 'stlm'",
    "ModelConfig.byte_embed_dim = 16",
    "ModelConfig.byte_encoder_layers = 2",
    "ModelConfig.byte_decoder_layers = 1",
]


@pytest.mark.slow
def test_an_stlm_byte_model_logs_its_reconstruction_loss_and_samples(tmp_path, data_dir):
    params = [*tiny_run(steps=3), *STLM_BYTES, "MeshConfig.data = 1", "MeshConfig.num_devices = 1"]
    argv = [f"--workdir={tmp_path}", "--gin_file=models/tiny_test.gin"]
    assert cli.main(["train", *argv, *[f"--gin_param={p}" for p in params]]) == 0
    records = read_metrics(tmp_path)
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(0 < r["reconstruction_loss"] < r["loss"] for r in train)
    evals = [r for r in records if "eval_loss" in r]
    assert evals and all("reconstruction_loss" not in r for r in evals)
    assert cli.main(["sample", f"--workdir={tmp_path}", "--prompt=def", "--max_new_tokens=3"]) == 0
