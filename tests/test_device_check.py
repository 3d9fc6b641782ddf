"""experiments/device_check.py: its CPU dry run runs every part at tiny sizes and records each
as ok in device_check.json (so the script is known to work before a GPU is lent); a part that
hangs is stopped at its timeout, recorded with its partial results, and the next part runs."""

import functools
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "device_check.py")


@functools.cache
def _module():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _run(out, *args, timeout):
    """device_check.py --dry-run with no bundle (no kzl files, no transformers 4.57)."""
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out), "--bundle",
                           str(out / "no_bundle"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    summary = out / "device_check.json"
    data = json.loads(summary.read_text()) if summary.exists() else None
    return proc, data


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    proc, data = _run(out, timeout=2700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, data


# the dry run takes 2-4 minutes of a 2-core CPU: CI runs it in its Python 3.12 leg (the device
# image's Python), beside the main leg, with -m slow
@pytest.mark.slow
def test_every_part_of_the_dry_run_records_ok(dry_run):
    _, data = dry_run
    names = [part.name for part in _module().part_table()]
    assert data["order"] == names and data["dry_run"] is True
    torch_missing = importlib.util.find_spec("torch") is None
    for name in names:
        entry = data["parts"][name]
        if name == "torch_dt" and torch_missing:  # no PyTorch here: said, not silently passed
            assert entry["status"] == "skipped" and entry["reason"], entry
            continue
        assert entry["status"] == "ok", (name, entry.get("error"), entry.get("log_tail"))
        assert 0 < entry["wall_s"] <= entry["timeout_s"] + 30


@pytest.mark.slow
def test_dry_run_numbers(dry_run):
    out, data = dry_run
    parts = data["parts"]
    versions = parts["versions"]
    assert versions["backend"] == "cpu" and versions["packages"]["jax"]
    # a float32 matmul on the CPU agrees with float64 to float32 rounding (no TF32 there)
    assert versions["matmul_float32_rel_error"] < 1e-5
    assert versions["matmul_float32_tflops"] > 0
    for dtype in ("float32", "bfloat16"):
        for model in ("s4dm", "dt", "mamba", "bc"):
            (row,) = parts[f"train_{dtype}_{model}"]["rows"]
            assert (row["model"], row["seeds"], row["dtype"]) == (model, 1, dtype)
            assert row["s_per_step"] > 0 and row["compile_s"] > 0 and row["temp_mb"] >= 0
    assert parts["tests"]["passed"] == len(_module().DRY_TESTS)
    assert parts["tests"]["failed"] == []
    e2e = parts["e2e"]
    assert e2e["trained_steps"] == 60 and 0 < e2e["eval_env_steps"] <= 20  # 1 episode, <= 20
    np.testing.assert_allclose(e2e["train_steps_per_s"], 60 / e2e["wall_times"]["train_s"])
    cache = parts["cache"]
    assert cache["cache_entries"] > 0
    assert cache["compile_s_cached"] < 0.5 * cache["compile_s_first"]
    assert parts["inference"]["rows"][0]["us_per_step"] > 0

    train = json.loads((out / "cpu_train.json").read_text())
    assert train["meta"]["backend"] == "cpu" and len(train["rows"]) == 8
    step = {(r["dtype"], r["model"]): r["s_per_step"] for r in train["rows"]}
    for r in train["rows"]:
        assert r["vs_dt"] == pytest.approx(step[r["dtype"], r["model"]] / step[r["dtype"], "dt"])
        if r["dtype"] == "bfloat16":
            assert r["bf16_speedup"] == pytest.approx(step["float32", r["model"]]
                                                      / step["bfloat16", r["model"]])
    assert {p.name for p in out.iterdir() if p.is_file()} <= {
        "device_check.json", "device_check.log", "cpu_train.json", "cpu_inference.json",
        "cpu_e2e.json", "cpu_torch_dt.json"}  # the device tool returns at most 8 files


def test_a_hanging_part_is_stopped_recorded_and_the_next_part_runs(tmp_path):
    proc, data = _run(tmp_path, "--only", "selftest_hang", "versions", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    hang = data["parts"]["selftest_hang"]
    assert hang["status"] == "timeout" and hang["before_hang"] is True  # partial result kept
    assert hang["wall_s"] < hang["timeout_s"] + 20
    assert "part_selftest_hang" in hang["log_tail"]  # faulthandler's stack of the hung process
    assert data["parts"]["versions"]["status"] == "ok"


def test_timeouts_keep_the_later_parts_floors_and_parts_that_do_not_fit_are_skipped(tmp_path):
    proc, data = _run(tmp_path / "a", "--only", "versions", "selftest_hang", "--budget-s", "40",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    floor = _module().SELFTEST.floor_s
    assert data["parts"]["versions"]["status"] == "ok"
    assert 30 < data["parts"]["versions"]["timeout_s"] <= 40 - floor
    assert data["parts"]["selftest_hang"]["status"] == "timeout"
    proc, data = _run(tmp_path / "b", "--only", "versions", "--budget-s", "5", timeout=60)
    assert data["parts"]["versions"]["status"] == "skipped"  # under its 10 s floor
    assert "budget" in data["parts"]["versions"]["reason"]


def test_unknown_parts_are_refused(tmp_path):
    proc, _ = _run(tmp_path, "--only", "nonsense", timeout=60)
    assert proc.returncode == 2 and "unknown part(s) ['nonsense']" in proc.stderr


def test_failing_tests_are_reported_and_run_at_highest_precision(tmp_path):
    (tmp_path / "test_planted.py").write_text(
        "import os\n\n\ndef test_precision():\n"
        "    assert os.environ['JAX_DEFAULT_MATMUL_PRECISION'] == 'highest'\n\n\n"
        "def test_fails():\n    assert 1 == 2\n")
    proc, data = _run(tmp_path, "--only", "tests", "--tests", str(tmp_path / "test_planted.py"),
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tests = data["parts"]["tests"]
    assert tests["status"] == "failed" and tests["passed"] == 1
    (failed,) = tests["failed"]
    assert failed.endswith("test_planted.py::test_fails")
