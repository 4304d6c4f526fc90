"""The walkthrough (examples/walkthrough.py, a jupytext percent script, and the notebook made from it) runs top to
bottom in a Jupyter kernel of this Python, finds the planted dedicated names and draws its plots."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "walkthrough.py"
NOTEBOOK = ROOT / "examples" / "walkthrough.ipynb"
KERNEL = "namesae-walkthrough"


def test_the_committed_notebook_is_the_script_without_outputs():
    import jupytext
    import nbformat

    script = jupytext.read(SCRIPT)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [(c.cell_type, c.source) for c in script.cells], \
        "rebuild it: jupytext --to ipynb examples/walkthrough.py"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in notebook.cells
               if c.cell_type == "code")


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs this very Python (with this checkout's namesae first on its path)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "namesae tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH"))
                                                     if p))
    return KERNEL


@pytest.mark.slow
def test_walkthrough_runs_in_a_kernel_finds_the_planted_names_and_draws_its_plots(kernel, tmp_path):
    import jupytext
    from nbclient import NotebookClient

    from namesae import IdentityResult

    nb = jupytext.read(SCRIPT)
    NotebookClient(nb, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(plots) == 2
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    found, planted = map(int, re.search(r"(\d+) of the (\d+) planted dedicated names", text).groups())
    assert planted == 8 and found >= 6, text
    moves = dict(re.findall(r"cosine to its (parts' prediction|own mean) ([-\d.]+ -> [-\d.]+)", text))
    before, after = map(float, moves["parts' prediction"].split(" -> "))
    assert after > before + 0.02  # zeroing the identity features moves the name towards its parts
    saved = IdentityResult.load(tmp_path / "runs" / "walkthrough" / "identity.json")
    assert sum(r.dedicated for r in saved.records) >= found
