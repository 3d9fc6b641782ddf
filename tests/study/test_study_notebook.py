"""The Colab TPU notebook runs top to bottom on CPU with its TINY parameter (nbclient)."""

import os

import nbformat
from nbclient import NotebookClient
from runner_configs import ROOT


def test_notebook_runs_top_to_bottom_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("S4DM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("S4DM_NOTEBOOK_WORKDIR", str(tmp_path / "nb"))
    monkeypatch.delenv("S4DM_REPO_URL", raising=False)
    nb = nbformat.read(os.path.join(ROOT, "experiments", "colab_tpu.ipynb"), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                        for o in c.get("outputs", []))
    assert "s4dm finished" in outputs and "dt finished" in outputs
    assert (tmp_path / "nb" / "report" / "report.md").exists()
    assert (tmp_path / "nb" / "results" / "benchmark" / "notebook" / "hopper-medium" /
            "s4dm.json").exists()
