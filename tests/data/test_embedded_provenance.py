"""The shipped embedded dataset is what its recorded command makes from the shipped policy."""

import json

import numpy as np
import pytest

pytest.importorskip("mujoco")

from s4dm_jax.data import EMBEDDED_DATASET_ID, EMBEDDED_DATASETS_ROOT, load_dataset  # noqa: E402
from s4dm_jax.data.collect import rollout  # noqa: E402
from s4dm_jax.rl import Policy  # noqa: E402

POLICY = EMBEDDED_DATASETS_ROOT.parent / "policies" / "hopper-medium-sac-s0" / "policy"
METADATA = EMBEDDED_DATASETS_ROOT / EMBEDDED_DATASET_ID / "data" / "metadata.json"


def test_provenance_names_the_shipped_policy_and_seed():
    provenance = json.loads(METADATA.read_text())["s4dm_provenance"]
    if isinstance(provenance, str):  # minari stores nested dicts as their repr
        import ast

        provenance = ast.literal_eval(provenance)
    assert provenance["seed"] == 0 and provenance["kind"] == "medium"
    assert "--policy s4dm_jax/assets/policies/hopper-medium-sac-s0/policy" in provenance["command"]


def test_first_episodes_regenerate_exactly_from_the_shipped_policy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco may write MUJOCO_LOG.TXT into the cwd
    ds = load_dataset("embedded")
    episodes = rollout("Hopper-v5", Policy.load(POLICY), 1500, seed=0, progress=False)
    complete = [e for e in episodes if e["terminations"][-1] or len(e["actions"]) == 1000]
    assert len(complete) >= 2
    for i, ep in enumerate(complete):
        start, length = ds.episode_starts[i], ds.episode_lengths[i]
        assert length == len(ep["actions"])
        sl = slice(start, start + length)
        obs = ep["observations"][:-1].astype(np.float32)  # T+1 rows -> the T stored ones
        np.testing.assert_array_equal(ds.observations[sl], obs)
        np.testing.assert_array_equal(ds.actions[sl], ep["actions"])
        np.testing.assert_allclose(ds.rewards[sl], ep["rewards"], rtol=1e-6)
