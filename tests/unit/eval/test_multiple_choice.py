"""Multiple-choice scoring: task files, harness tokenization, log-likelihoods, acc / acc_norm."""

from pathlib import Path

import pytest

from tinylm_jax.errors import DataError
from tinylm_jax.eval import multiple_choice as mc

SAMPLE_TASK = Path(__file__).resolve().parents[2] / "data" / "mc_sample.jsonl"


def test_task_file_errors_name_the_line(tmp_path):
    task = mc.load_task(SAMPLE_TASK)
    assert task.name == "mc_sample" and len(task.examples) == 5
    bad = tmp_path / "bad.jsonl"
    for line, message in [
        ('{"context": "a", "choices": ["x"], "answer": 0}', "choices a list of >= 2"),
        ('{"context": "a", "choices": ["x", "y"], "answer": 2}', "answer must be an index"),
        ('{"context": "a", "choices": ["x", ""], "answer": 0}', "non-empty string"),
        ('{"question": "a"}', "needs {"),
        ("not json", "not JSON"),
    ]:
        bad.write_text('{"context": "ok", "choices": ["x", "y"], "answer": 1}\n' + line + "\n")
        with pytest.raises(DataError, match=f"bad.jsonl:2: .*{message}"):
            mc.load_task(bad)
