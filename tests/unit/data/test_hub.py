"""Which names are Hugging Face Hub ids (and which stay local paths or URLs)."""

import pytest

from tinylm_jax.data.hub import is_hub_id


@pytest.mark.parametrize(
    "name, hub",
    [
        ("Qwen/Qwen2-0.5B", True),
        ("org/name@v1.0", True),
        ("meta-llama/Llama-3.2-1B", True),
        ("./org/name", False),
        ("/abs/path", False),
        ("gs://bucket/tokenizer", False),
        ("a/b/c", False),
        ("tokenizer.model", False),
    ],
)
def test_hub_id_form(name, hub):
    assert is_hub_id(name) is hub


def test_an_existing_local_directory_is_never_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("org/name")
