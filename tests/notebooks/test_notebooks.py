"""Notebooks run end to end and show their plots."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", ["graph_analytics.ipynb"])
def test_notebook_executes_and_plots(name, tmp_path):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 5, f"expected plots, got {len(pngs)}"
    text = "".join(o.get("text", "") for o in outputs)
    assert "components" in text
