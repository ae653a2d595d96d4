"""Every notebook in notebooks/ runs top to bottom on small data, so none of them rots,
and is committed without outputs.

The notebooks read ``KLANTBEELD_NOTEBOOK_CUSTOMERS`` (shop size) and
``KLANTBEELD_NOTEBOOK_DIR`` (where they write); here a 1,000-customer shop in a temporary
folder keeps all three to about a minute on 2 cores (nbclient runs each in a fresh kernel).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
TEST_CUSTOMERS = "1000"


def test_the_three_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_bring_your_own_data.ipynb",
        "03_model_comparison.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert dirty == [], f"{path.name}: cells {dirty} hold outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLANTBEELD_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("KLANTBEELD_NOTEBOOK_CUSTOMERS", TEST_CUSTOMERS)
    monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    errors = [out for out in outputs if out.get("output_type") == "error"]
    assert errors == []
    # plots are rendered inline, and every notebook wrote where it was told
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert (tmp_path / "home" / "mlflow.db").is_file()
