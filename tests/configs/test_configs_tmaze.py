"""T-Maze presets ('tmaze-<kind>-L<L>-<quality>') and the memory study's cell configs."""

import importlib.util
import json
import os

import pytest

from s4dm_jax.configs import base, bc, dt, mamba, s4dm
from s4dm_jax.data import load_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _memory():
    spec = importlib.util.spec_from_file_location(
        "memory_study", os.path.join(ROOT, "experiments", "memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("module", [s4dm, dt, mamba, bc])
def test_tmaze_preset_points_at_generated_data(module):
    c = module.get_config("tmaze-active-L30-medium")
    assert c.preset == "tmaze-active-L30-medium" and c.dataset == "tmaze:active-L30-medium"
    assert c.rtg_scale == 1.0 and list(c.eval.target_returns) == [1.0]
    assert c.eval.max_episode_steps == 33  # the active maze's episode: L + 3
    if c.episode_start_windows:  # S4DM: whole episodes, its context is the episode
        assert c.model.context_len == 33
    ds = load_dataset(c.dataset)
    assert ds.episode_lengths.max() == c.eval.max_episode_steps
    long = module.get_config("tmaze-passive-L1500-mixed")  # an episode longer than 1000 steps
    if "max_ep_len" in long.model:  # DT, Decision Mamba: timesteps of the whole episode
        assert long.model.max_ep_len == long.eval.max_episode_steps == 1503  # L + 3
    with pytest.raises(Exception, match="tmaze:passive-L100-mixed"):
        base.get_base_config("tmaze-passive-L0-mixed")


def test_memory_cells_set_context_and_budget():
    memory = _memory()
    args = memory.argparse.Namespace(lengths=[10, 1000], kind="passive", quality="mixed",
                                     models=list(memory.VARIANTS), steps=None, episodes=1,
                                     all_lengths=True)
    cells = {cell: c for _, cell, c in memory.tmaze_cells(args)}
    assert "dt-Kepisode-L10" in cells and "dt-Kepisode-L1000" not in cells  # K too long
    s = cells["s4dm-L1000"]
    assert s.model.context_len == 1001 and s.episode_start_windows and s.seeds == 5
    assert cells["dt-K20-L10"].model.context_len == 20
    assert cells["mamba-recurrent-L10"].model.inference == "recurrent"
    assert cells["mamba-recurrent-L10"].model.context_len == 11
    assert cells["bc-L10"].dataset == "tmaze:passive-L10-mixed"
    b = memory.budget(cells["dt-K20-L10"])
    assert b["transitions_seen"] == b["steps"] * b["batch_size"] * 20
    assert cells["dt-K20-L1000"].model.max_ep_len == 1001  # timesteps of the whole episode
    assert cells["s4dm-L10"].num_steps == 200 and cells["s4dm-L10"].optim.warmup_steps == 20
    args.all_lengths = False  # the hour's budget: whole-episode Mamba / DT at L <= 30 only
    names = [cell for _, cell, _ in memory.tmaze_cells(args)]
    assert "mamba-recurrent-L10" in names and "mamba-recurrent-L1000" not in names
    assert "s4dm-L1000" in names


def test_memory_cell_record_has_per_seed_per_episode_success(tmp_path):
    """A 2-step BC cell at L = 3 (5 seeds, 3 episodes each): the record holds the budget and
    per seed the per-episode returns, each a success (0 or 1)."""
    memory = _memory()
    config = memory.cell_config("bc", "tmaze:passive-L3-mixed-n30", 4,
                                {"num_steps": 2, "eval.episodes": 3, "optim.warmup_steps": 0,
                                 "steps_per_call": 2, "checkpoint_every": 2, "log_every": 2})
    args = memory.argparse.Namespace(runs=str(tmp_path / "runs"),
                                     results=str(tmp_path / "results"), quiet=True)
    record = memory.run_cell("passive-mixed", "bc-L3", config, args)
    saved = memory.json.load(open(tmp_path / "results" / "memory" / "passive-mixed" /
                                  "bc-L3.json"))
    assert saved == memory.json.loads(memory.json.dumps(record))
    (entry,) = saved["eval"]
    assert entry["target_return"] == 1.0
    returns = entry["returns_per_seed"]
    assert len(returns) == 5 and all(len(r) == 3 for r in returns)
    assert all(v in (0.0, 1.0) for r in returns for v in r)
    assert saved["budget"] == {"steps": 2, "batch_size": 256, "context_len": 1,
                               "transitions_seen": 512}


def test_memory_report_tables_success_with_seed_level_intervals(tmp_path):
    """Success rates are seed means of 0/1 episodes; the interval resamples seeds: identical
    seeds give a point interval, disagreeing seeds a wide one; a missing cell says so."""
    memory = _memory()
    study = tmp_path / "passive-mixed"
    study.mkdir()
    cells = {"s4dm-L10": [[1, 1, 1, 1]] * 5,
             "dt-K20-L10": [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
             "dt-K20-L30": [[0, 1, 0, 1]] * 5}
    for name, returns in cells.items():
        record = {"cell": name, "eval": [{"target_return": 1.0, "returns_per_seed": returns}],
                  "budget": {"steps": 2, "batch_size": 4, "context_len": 20,
                             "transitions_seen": 160}, "wall_times": {"train_s": 1.5}}
        (study / f"{name}.json").write_text(json.dumps(record))
    rows, table = memory.success_table(str(study))
    by = {(r["variant"], r["L"]): r for r in rows}
    assert by[("s4dm", 10)]["success"] == 1.0 and by[("s4dm", 10)]["ci"] == [1.0, 1.0]
    dt10 = by[("dt-K20", 10)]
    assert dt10["success"] == pytest.approx(0.35) and dt10["per_seed"] == [0.25, 1, 0, 0.5, 0]
    assert dt10["ci"][0] <= 0.15 and dt10["ci"][1] >= 0.6  # seeds disagree: wide
    assert by[("dt-K20", 30)]["ci"] == [0.5, 0.5]  # seeds agree: episode noise is not counted
    assert "| s4dm | 1.00 [1.00, 1.00] | not run |" in table
    text = memory.write_report(str(study))
    assert "| dt-K20-L10 | 2 | 4 | 20 | 160 | 2 |" in text
    assert (study / "success_vs_length.png").stat().st_size > 0


def test_masked_cells_and_their_unmasked_control():
    memory = _memory()
    args = memory.argparse.Namespace(envs=["hopper"], models=list(memory.VARIANTS),
                                     delayed=False, unmasked=False)
    cells = {(study, cell): c for study, cell, c in memory.masked_cells(args)}
    assert set(cells) == {("masked", f"{v}-hopper") for v in ("s4dm", "dt-K20", "mamba-window",
                                                               "bc")}
    assert cells[("masked", "s4dm-hopper")].dataset == "masked:s4dm/hopper/medium-v0"
    args.unmasked, args.delayed = True, True
    control = {(study, cell): c for study, cell, c in memory.masked_cells(args)}
    c = control[("unmasked-delayed", "dt-K20-hopper")]
    assert c.dataset == "s4dm/hopper/medium-v0" and c.delayed_reward and c.num_steps == 1000


def test_masked_report_normalises_episodes_and_resamples_seeds(tmp_path):
    memory = _memory()
    refs = {"spec": "masked:x", "ref_min_score": 10.0, "ref_max_score": 110.0}
    for study, returns in (("masked", [[60.0, 60.0]] * 5),
                           ("unmasked", [[10.0, 110.0], [110.0, 110.0], [10.0, 10.0],
                                         [60.0, 60.0], [60.0, 60.0]])):
        (tmp_path / study).mkdir()
        record = {"cell": "s4dm-hopper", "dataset": refs,
                  "eval": [{"target_return": 3600.0, "returns_per_seed": returns}],
                  "budget": {"steps": 2, "batch_size": 4, "context_len": 1000,
                             "transitions_seen": 8000}}
        (tmp_path / study / "s4dm-hopper.json").write_text(json.dumps(record))
    rows, table = memory.masked_table(str(tmp_path))
    by = {r["study"]: r for r in rows}
    assert by["masked"]["score"] == 50.0 and by["masked"]["ci"] == [50.0, 50.0]
    assert by["unmasked"]["per_seed"] == [50.0, 100.0, 0.0, 50.0, 50.0]
    assert by["unmasked"]["ci"][0] < 30.0 and by["unmasked"]["ci"][1] > 70.0
    assert table.splitlines()[0] == "| model | hopper unmasked | hopper masked |"
    assert "| s4dm | 50.0 [" in table
    text = memory.write_masked_report(str(tmp_path))
    assert "| s4dm | 2 | 4 | 1000 | 8,000 |" in text and "at target return hopper 3600 " in text
    assert (tmp_path / "masked_scores.png").stat().st_size > 1000
    del record["dataset"]
    (tmp_path / "masked" / "s4dm-hopper.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="no reference scores"):
        memory.masked_table(str(tmp_path))
