"""Every model config x every preset resolves to the values recorded in
`presets_fixture.json` (recorded before the presets were defined once in configs/presets.py).

The model block is compared relative to `s4dm_jax.models.DEFAULTS` (the fixture stores only
the model fields a preset changes), so a change of the models' own defaults does not need a
new fixture; every other field is compared exactly.
"""

import importlib
import json
import os

import pytest

from s4dm_jax.configs import base, presets
from s4dm_jax.models import DEFAULTS

MODELS = ("s4dm", "dt", "mamba", "bc")
PRESETS = (None, "", "embedded",
           *(f"{env}-{dataset}" for env in base.ENVS for dataset in base.DATASETS))
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets_fixture.json")


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resolved(model: str, preset) -> dict:
    """Flat {dotted field: JSON value} of the config, model fields equal to DEFAULTS dropped."""
    config = importlib.import_module(f"s4dm_jax.configs.{model}").get_config(preset)
    flat = json.loads(json.dumps(_flatten(config.to_dict())))
    defaults = json.loads(json.dumps(_flatten(DEFAULTS[model], "model.")))
    return {k: v for k, v in flat.items() if not (k in defaults and defaults[k] == v)}


def all_resolved() -> dict:
    return {f"{model}:{preset}": resolved(model, preset)
            for model in MODELS for preset in PRESETS}


@pytest.mark.parametrize("model", MODELS)
def test_every_preset_resolves_to_the_recorded_values(model):
    with open(FIXTURE) as fh:
        expected = json.load(fh)
    for preset in PRESETS:
        key = f"{model}:{preset}"
        assert resolved(model, preset) == expected[key], key


def test_fixture_covers_every_model_and_preset():
    with open(FIXTURE) as fh:
        assert set(json.load(fh)) == {f"{m}:{p}" for m in MODELS for p in PRESETS}


def test_embedded_preset_fields_exist_and_only_apply_to_embedded():
    config = importlib.import_module("s4dm_jax.configs.dt").get_config("embedded")
    with pytest.raises(KeyError, match="not_a_field"):
        presets.set_fields(config, {"optim.not_a_field": 1.0})
    full = importlib.import_module("s4dm_jax.configs.dt").get_config("hopper-medium")
    assert presets.apply_embedded(full.copy_and_resolve_references()).to_dict() == full.to_dict()
    for dotted, value in presets.EMBEDDED.items():
        node = config
        for name in dotted.split("."):
            node = node[name]
        assert node == value, dotted


if __name__ == "__main__":  # only when a preset changes on purpose:
    # python tests/configs/test_configs_presets.py rewrites the fixture
    with open(FIXTURE, "w") as fh:
        json.dump(all_resolved(), fh, indent=1, sort_keys=True)
