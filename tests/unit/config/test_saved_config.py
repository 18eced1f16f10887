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
    parsed = json.loads(json.dumps(dataclasses.asdict(config), default=list))
    parsed.pop("gin_config")
    for section, fields in ADDED.items():
        assert {k: parsed[section].pop(k) for k in fields} == fields
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    got = json.loads(json.dumps(parsed, default=list))
    # Fields and parts (e.g. `cmc`) added since the fixture was written take their defaults;
    # every old one is equal.
    fresh = json.loads(json.dumps(dataclasses.asdict(type(config)()), default=list))
    for section, fields in got.items():
        if section not in expected:
            assert fields == fresh[section], section
            continue
        if not isinstance(fields, dict):
            assert fields == expected[section], section
            continue
        assert set(expected[section]) <= set(fields), section
        for field, value in fields.items():
            want = expected[section].get(field, fresh[section][field])
            assert value == want, f"{section}.{field}"
    assert set(expected) <= set(got)


def test_a_saved_config_round_trips_through_its_operative_text(gin_clean):
    config = config_lib.parse(workdir_config=FIXTURES / "pangu_rounds.gin")
    again = config_lib.parse(gin_params=[config.gin_config])
    assert again.replace(gin_config="") == config.replace(gin_config="")
