"""The project's own files: dependency lists in step, notebooks committed clean, CI command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda-forge name where they differ
NOT_FROM_PIP = {"python", "pip", "nodejs"}  # conda brings Node.js too, for the npm packages of package.json


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip_names = requirement_names(project["dependencies"] + extras["notebooks"] + extras["dev"]) - {"course-utils"}
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    assert environment["channels"][0] == "conda-forge" and "defaults" not in environment["channels"]
    conda = [entry for entry in environment["dependencies"] if isinstance(entry, str)]
    pip_section = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert "-e .[dev]" in pip_section
    conda_names = requirement_names(conda) - NOT_FROM_PIP
    assert conda_names == {CONDA_NAMES.get(name, name) for name in pip_names}


def test_committed_notebooks_have_no_outputs():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks, "the course has no notebooks"
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        dirty = [
            i
            for i, cell in enumerate(cells)
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
        ]
        assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def test_every_cell_of_the_numbered_notebooks_has_a_slide_type_for_rise():
    """RISE presents a notebook by its cells' slide types; `python -m course_utils.build
    slide-types` writes them for new cells (from the executed copies, so figures are known)."""
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        untyped = [i for i, cell in enumerate(cells) if "slide_type" not in cell["metadata"].get("slideshow", {})]
        assert not untyped, (
            f"{path.name}: cells {untyped} have no slide type; run python -m course_utils.build slide-types"
        )
        shown = [cell["metadata"]["slideshow"]["slide_type"] for cell in cells]
        assert next(kind for kind in shown if kind not in ("skip", "notes")) == "slide", path.name


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make lint" in readme and ci.index("make lint") < ci.index("make test")


def test_make_lab_serves_the_repository_root_as_root_or_user():
    """`make lab`'s own command (as `make -n` prints it), started headless for a few seconds:
    it runs as root too (no 'Running as root is not recommended' exit) and serves the repository
    root, where notebooks/ and homework/ both are."""
    import subprocess

    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    command = next(line for line in printed.splitlines() if "jupyter lab" in line)
    assert "--ServerApp.root_dir=" in command and "--allow-root" in command
    run = subprocess.run(
        ["bash", "-c", f"timeout 20 {command} --no-browser --ServerApp.port=0 --ServerApp.token=test"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert f"Serving notebooks from local directory: {REPO}" in run.stderr, run.stderr[-2000:]
