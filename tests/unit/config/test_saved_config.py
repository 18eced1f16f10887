"""`config.gin` files written by earlier releases keep loading to the same RunConfig.

The fixtures were written by `tinylm train`'s config writer at commit 9fdac48 (before the
package was split into layers), with the RunConfig each parsed to then, as JSON.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from tinylm_jax.config import gin as config_lib

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "saved_config"
# Fields added since the fixtures were written: an old config.gin takes their defaults.
ADDED = {
    "rounds": {
        "start_fraction": 0.05,
        "fraction_step": 0.05,
        "difficulty": "self_loss",
        "reference": None,
        "advance": "plateau",
        "patience": 3,
        "min_delta": 0.0,
        "restart_schedule": False,
    }
}


@pytest.mark.parametrize("name", ["demo", "pangu_rounds"])
def test_a_saved_config_gin_parses_to_the_run_config_it_had(name, gin_clean):
    config = config_lib.parse(workdir_config=FIXTURES / f"{name}.gin")
    parsed = dataclasses.asdict(config)
    parsed.pop("gin_config")
    for section, fields in ADDED.items():
        assert {k: parsed[section].pop(k) for k in fields} == fields
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert json.loads(json.dumps(parsed, default=list)) == expected


def test_a_saved_config_round_trips_through_its_operative_text(gin_clean):
    config = config_lib.parse(workdir_config=FIXTURES / "pangu_rounds.gin")
    again = config_lib.parse(gin_params=[config.gin_config])
    assert again.replace(gin_config="") == config.replace(gin_config="")
