"""Cross-model Control training: the loss on combined logits, the records, and the jitted step
(template untouched, gradients only into the delta, 1 device = 8 devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tinylm_jax.config.cmc import CMCConfig
from tinylm_jax.config.mesh import MeshConfig
from tinylm_jax.config.model import ModelConfig
from tinylm_jax.config.run import RunConfig
from tinylm_jax.config.train import TrainConfig
from tinylm_jax.engine.run import build_run, run_context
from tinylm_jax.engine.state import init_state
from tinylm_jax.errors import ConfigError, DataError
from tinylm_jax.parallel.batch import global_batch_to_devices
from tinylm_jax.recipes.cmc import data as cmc_data
from tinylm_jax.recipes.cmc.step import cmc_loss
from tinylm_jax.recipes.cmc.train import compiled_step

TEMPLATE = ModelConfig(
    vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=32
)
DELTA = TEMPLATE.replace(d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, ffn_dim=32)
TRAIN = TrainConfig(batch_size=8, seq_len=16, eval_steps=0, num_steps=10)


class CharTokenizer:
    """Ids 3.. for characters; 0 pad, 1 BOS, 2 EOS (enough for encoding records)."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return [3 + ord(c) % 61 for c in text]


def batch_of(records, seed=0):
    rows = cmc_data.encode_rows(records, CharTokenizer(), TRAIN.seq_len)
    return cmc_data.batch_at(rows, 0, TRAIN.batch_size, seed)


def test_loss_is_retain_mean_minus_forget_mean_and_grad_ascent_drops_retain():
    rng = np.random.default_rng(0)
    template, delta = (jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32) for _ in range(2))
    batch = {
        "targets": jnp.asarray([[1, 2, 3], [4, 0, 1]]),
        "weights": jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
        "forget": jnp.asarray([[0.0] * 3, [1.0] * 3]),
    }
    ce = optax.softmax_cross_entropy_with_integer_labels(
        jax.nn.log_softmax(template) + delta, batch["targets"]
    )
    retain, forget = (ce[0, 0] + ce[0, 1]) / 2, ce[1].sum() / 3
    loss, metrics = cmc_loss(template, delta, batch, CMCConfig())
    np.testing.assert_allclose(loss, retain - forget, rtol=1e-6)
    np.testing.assert_allclose(metrics["retain_loss"], retain, rtol=1e-6)
    ascent, _ = cmc_loss(template, delta, batch, CMCConfig(forget_loss="grad_ascent"))
    np.testing.assert_allclose(ascent, -forget, rtol=1e-6)


def test_records_weight_the_response_only_and_batches_are_a_function_of_the_step():
    records = [{"prompt": "ab", "response": "cd", "forget": False}] * 3 + [
        {"text": "xyz", "forget": True}
    ]
    rows = cmc_data.encode_rows(records, CharTokenizer(), 8)
    # BOS a b | c d EOS: the targets c, d and EOS carry the loss.
    np.testing.assert_array_equal(rows.weights_NS[0], [0, 0, 0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(rows.weights_NS[3], [0, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(rows.forget_N, [False, False, False, True])
    first = cmc_data.batch_at(rows, 5, 3, seed=1)
    again = cmc_data.batch_at(rows, 5, 3, seed=1)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    # One epoch of single-row batches visits every row once.
    seen = {int(cmc_data.batch_at(rows, s, 1, 0)["forget"][0, 0]) for s in range(4)}
    assert seen == {0, 1}


@pytest.mark.parametrize(
    "lines, match",
    [
        ([], "holds no records"),
        (['{"prompt": "a"}'], "'prompt' and 'response'"),
        (['{"text": "a", "forget": "yes"}'], "true or false"),
        (["not json"], "not JSON"),
    ],
)
def test_bad_data_files_are_explained(tmp_path, lines, match):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=match):
        cmc_data.load_records(path)


def test_alpha_must_be_finite():
    with pytest.raises(ConfigError, match="finite"):
        CMCConfig(alpha=float("nan"))


def train_delta(mesh: MeshConfig, steps: int = 3, **cmc):
    """(template params before, after, delta params before, after, losses) of `steps` steps."""
    template_run = build_run(RunConfig(model=TEMPLATE, train=TRAIN, mesh=mesh))
    run = build_run(RunConfig(model=DELTA, train=TRAIN, mesh=mesh, cmc=CMCConfig(**cmc)))
    with run_context(run):
        template = init_state(template_run.init_fn, 1, template_run.shardings).params
        state = init_state(run.init_fn, 2, run.shardings)
    template_before, delta_before = jax.device_get((template, state.params))
    step = compiled_step(run, template_run)
    records = [{"prompt": f"q{i}", "response": f"answer {i}", "forget": False} for i in range(5)]
    records += [{"text": f"secret {i}", "forget": True} for i in range(3)]
    rows = cmc_data.encode_rows(records, CharTokenizer(), TRAIN.seq_len)
    losses = []
    with run_context(run):
        for i in range(steps):
            batch = global_batch_to_devices(cmc_data.batch_at(rows, i, 8, 0), run.mesh, run.rules)
            state, metrics = step(state, template, batch)
            losses.append(metrics)
    return template_before, jax.device_get(template), delta_before, state, losses


@pytest.mark.slow
def test_training_changes_only_the_delta():
    template_before, template_after, delta_before, state, _ = train_delta(
        MeshConfig(num_devices=1), steps=2
    )
    for a, b in zip(jax.tree.leaves(template_before), jax.tree.leaves(template_after), strict=True):
        np.testing.assert_array_equal(a, b)
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(delta_before), jax.tree.leaves(state.params), strict=True)
    ]
    assert all(changed)


@pytest.mark.slow
def test_one_device_equals_eight_devices():
    one = train_delta(MeshConfig(num_devices=1))[-1]
    eight = train_delta(MeshConfig(data=2, fsdp=2, tensor=2))[-1]
    for a, b in zip(one, eight, strict=True):
        # The loss is a difference of the two means: compare each mean relatively.
        for key in ("retain_loss", "forget_loss"):
            np.testing.assert_allclose(float(a[key]), float(b[key]), rtol=1e-5)
        np.testing.assert_allclose(float(a["loss"]), float(b["loss"]), atol=1e-5)
