"""Every notebook runs top to bottom twice in one kernel (a lecturer re-running it live).

nbval (``pytest --nbval-lax``, part of ``make test``) already executes each notebook once in a
fresh kernel; this test re-runs all cells a second time in the same kernel, which catches state
that only works once (consumed generators, figures accumulating, files opened exclusively).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_twice_in_one_kernel(path: Path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        for _run in (1, 2):
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)  # raises CellExecutionError on any error
