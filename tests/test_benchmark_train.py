"""experiments/benchmark_train.py: --compute-dtype reaches the compiled model and every row and
the JSON say which dtype was timed."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "experiments"))  # its `_bench` helper
    spec = importlib.util.spec_from_file_location(
        "benchmark_train", os.path.join(ROOT, "experiments", "benchmark_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compute_dtype_flag_reaches_the_model_and_the_rows(tmp_path, capsys, monkeypatch):
    bt = _module(monkeypatch)
    common = ["--models", "bc", "--preset", "embedded", "--seeds", "1", "--steps", "1",
              "--rounds", "1"]
    default = bt.main(common)
    out = tmp_path / "bf16.json"
    rows = bt.main([*common, "--compute-dtype", "bfloat16", "--json", str(out)])
    assert [r["dtype"] for r in default] == ["float32"]
    assert [r["dtype"] for r in rows] == ["bfloat16"]
    assert json.loads(out.read_text())["rows"][0]["dtype"] == "bfloat16"
    assert rows[0]["s_per_step"] > 0 and rows[0]["params"] == default[0]["params"]
    assert "| bc | 1 | bfloat16 |" in capsys.readouterr().out
