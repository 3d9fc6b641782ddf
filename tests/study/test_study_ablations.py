"""Ablation variants: configs, reuse of identical grid cells, and a tiny trained variant."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from runner_configs import ROOT

from s4dm_jax.study import ablations, grid

QUICK = grid.PROTOCOLS["quick"]


def test_variants_change_what_they_name_and_reuse_grid_cells():
    ctx = {(m, v): o for m, v, o in ablations.variants("context")}
    c = grid.cell_config("s4dm", "hopper", "medium", QUICK, ctx[("s4dm", "K5")])
    assert (c.model.context_len, c.episode_start_windows, c.model.inference) == (5, False,
                                                                                  "window")
    dt50 = grid.cell_config("dt", "hopper", "medium", QUICK, ctx[("dt", "K50")])
    assert dt50.model.context_len == 50
    # S4DM's windows at DT's batch: the same windows per step as DT at each K
    s50 = grid.cell_config("s4dm", "hopper", "medium", QUICK, ctx[("s4dm", "K50-batch64")])
    assert (s50.model.context_len, s50.batch_size, s50.model.inference) == (
        dt50.model.context_len, dt50.batch_size, "window")
    assert grid.cell_config("s4dm", "hopper", "medium", QUICK,
                            ctx[("s4dm", "K50")]).batch_size == 16
    same = [(m, v) for m, v, o in ablations.variants("context") + ablations.variants("kernel")
            if ablations.is_grid_cell(m, o, "hopper", "medium", QUICK)]
    assert same == [("dt", "K20"), ("s4dm", "episodes"), ("s4dm", "dplr-legs")]
    kern = {v: o for _, v, o in ablations.variants("kernel")}
    c = grid.cell_config("s4dm", "hopper", "medium", QUICK, kern["diag-diag-inv"])
    assert (c.model.ssm.mode, c.model.ssm.init, c.model.ssm.discretization) == (
        "diag", "diag-inv", "zoh")
    assert all(o == {"delayed_reward": True} for _, _, o in ablations.variants("delayed"))
    budget = {(m, v): o for m, v, o in ablations.variants("budget")}
    assert sorted(budget) == sorted((m, "steps5000") for m in grid.MODELS)
    c = grid.cell_config("dt", "hopper", "medium", QUICK, budget[("dt", "steps5000")])
    base = grid.cell_config("dt", "hopper", "medium", QUICK)
    assert (c.num_steps, c.eval.every) == (5000, 1000)
    # the quick schedule continued: same warmup, rate and logging, only longer
    assert (c.optim.warmup_steps, c.optim.learning_rate, c.log_every) == (
        base.optim.warmup_steps, base.optim.learning_rate, base.log_every)


def test_tiny_delayed_variant_is_written_under_ablations(tmp_path):
    tiny = grid.Protocol("tiny", num_steps=2, warmup_steps=1, eval_episodes=1, seeds=1,
                         description="test")
    over = {"delayed_reward": True, "dataset": "embedded", "steps_per_call": 2, "batch_size": 8,
            "eval.max_episode_steps": 10, "eval.target_returns": [1800.0],
            "model.hidden_dims": (16, 16), "eval.every": 1}
    out = ablations.run_variant(grid.CellSpec("bc", "hopper", "medium", tiny, overrides=over),
                                "delayed", results_root=str(tmp_path / "res"),
                                runs_root=str(tmp_path / "runs"), show_progress=False)
    assert out["status"] == "finished"
    path = tmp_path / "res" / "ablations" / "tiny" / "hopper-medium" / "bc-delayed.json"
    stored = json.loads(path.read_text())
    assert stored["config"]["delayed_reward"] is True
    # the step-1 evaluation (eval.every) is in the summary's curve, the final one in results
    first, last = stored["train_curve"]
    assert (first["step"], "eval" in last) == (1, False)
    assert np.asarray(first["eval"]["returns_per_seed"]).shape == (1, 1, 1)  # [T, S, E]


def test_tuned_variants_are_the_sweep_best_point_and_a_larger_baseline_rate():
    tuned = {(m, v): o for m, v, o in ablations.variants("tuned")}
    assert sorted(tuned) == [("dt", "lr1e-3"), ("mamba", "lr1e-3"), ("s4dm", "N64-L8-lr2e-3")]
    c = grid.cell_config("s4dm", "halfcheetah", "medium-replay", QUICK,
                         tuned[("s4dm", "N64-L8-lr2e-3")])
    assert (c.model.ssm.d_state, c.model.n_layers, c.optim.learning_rate) == (64, 8, 2e-3)
    assert c.optim.ssm_learning_rate == 1e-3  # the sweep varied the main rate only
    # the sweep's reported size of that point (BENCHMARKS: 18,462 parameters, 2.5% of DT)
    assert grid.preset_param_count("s4dm", "halfcheetah", "medium-replay",
                                   tuned[("s4dm", "N64-L8-lr2e-3")]) == 18_462
    for model in ("dt", "mamba"):
        c = grid.cell_config(model, "halfcheetah", "medium", QUICK, tuned[(model, "lr1e-3")])
        assert c.optim.learning_rate == 1e-3
    assert not any(ablations.is_grid_cell(m, o, "halfcheetah", "medium", QUICK)
                   for (m, _), o in tuned.items())
    # the variants are the quick-tuned protocol's cells
    for (model, _), over in tuned.items():
        assert (grid.cell_config(model, "hopper", "medium", QUICK, over).to_dict()
                == grid.cell_config(model, "hopper", "medium",
                                    grid.PROTOCOLS["quick-tuned"]).to_dict())


def test_targets_of_a_trained_variant_leave_its_records_alone(tmp_path):
    tiny_bc = {"dataset": "embedded", "steps_per_call": 2, "batch_size": 8,
               "eval.max_episode_steps": 10, "eval.target_returns": [1800.0],
               "model.hidden_dims": (16, 16)}
    tiny = grid.Protocol("tiny", num_steps=2, warmup_steps=1, eval_episodes=3, seeds=1,
                         description="test", model_overrides={"bc": tiny_bc})
    roots = {"results_root": str(tmp_path / "res"), "runs_root": str(tmp_path / "runs")}
    spec = grid.CellSpec("bc", "hopper", "medium", tiny)
    missing = ablations.run_targets(spec, variant="delayed", show_progress=False, **roots)
    assert missing["status"] == "missing"
    assert "--ablation delayed --env hopper --dataset medium --protocol tiny" in missing["reason"]
    with pytest.raises(ValueError, match="no trained ablation variant 'K5'; choose from delayed"):
        ablations.run_targets(spec, variant="K5", **roots)

    cell = ablations.run_variant(grid.CellSpec("bc", "hopper", "medium", tiny, overrides={
        "delayed_reward": True}), "delayed", show_progress=False, **roots)
    assert cell["status"] == "finished"
    trained = tmp_path / "runs" / "ablations" / "tiny" / "hopper-medium" / "bc-delayed"
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    out = ablations.run_targets(spec, variant="delayed", targets=[1800.0, 3000.0],
                                show_progress=False, **roots)
    assert out["status"] == "finished" and out["targets"] == [1800.0, 3000.0]
    assert (out["variant"], out["overrides"], out["trained_steps"]) == (
        "delayed", {"delayed_reward": True}, 2)
    stored = tmp_path / "res" / "ablations" / "tiny" / "hopper-medium" / "bc-delayed-targets.json"
    assert json.loads(stored.read_text())["achieved_per_seed"] == out["achieved_per_seed"]
    # the trained checkpoint, evaluated at its own target on the same env seeds (copies 0-2),
    # gives the trained cell's own evaluation
    assert np.shape(out["achieved_per_seed"]) == (2, 1)
    np.testing.assert_allclose(out["achieved_per_seed"][0],
                               cell["results"]["eval"][0]["mean_return_per_seed"], rtol=1e-5)
    # the evaluation's records went beside the summary's name, not into the trained cell
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before
    records = json.loads((trained.parent / "bc-delayed-targets" / "results.json").read_text())
    assert records["config"]["eval"]["target_returns"] == [1800.0, 3000.0]
    # the file records the trained cell it evaluated; it is reused only while that matches
    assert out["cell_config_hash"] == grid.config_hash(cell["config"])
    assert ablations.run_targets(spec, variant="delayed", targets=[1800.0, 3000.0],
                                 **roots) == json.loads(stored.read_text())
    other = ablations.run_targets(spec, variant="delayed", targets=[900.0], **roots)
    assert other["status"] == "stale" and "other targets" in other["reason"]
    legacy = {k: v for k, v in out.items() if k != "cell_config_hash"}
    stored.write_text(json.dumps(legacy))
    old = ablations.run_targets(spec, variant="delayed", targets=[1800.0, 3000.0], **roots)
    assert old["status"] == "stale" and "records no config hash" in old["reason"]


def test_launcher_refuses_an_unknown_or_misplaced_variant(tmp_path):
    script = os.path.join(ROOT, "experiments", "ablations.py")
    base = [sys.executable, script, "--results", str(tmp_path), "--runs", str(tmp_path)]
    for extra, message in [
            (["--ablation", "targets", "--models", "dt", "--variant", "diag-diag-lin"],
             "dt has no trained ablation variant 'diag-diag-lin'; choose from K1, K20, K5, K50"),
            (["--ablation", "kernel", "--variant", "diag-diag-lin"],
             "--variant goes with --ablation targets alone")]:
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written
