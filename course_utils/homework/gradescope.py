"""An autograder for Gradescope: one zip per assignment, and the entry point it runs.

``python -m course_utils.homework gradescope hw1_deconv --out build/gradescope`` writes
``hw1_deconv_gradescope.zip`` with Gradescope's two files at its root - ``setup.sh`` (installs
this package, packed into the zip, with its dependencies) and ``run_autograder`` - plus the
package's source and the assignment's full reference data (hidden checks included). On
Gradescope, ``run_autograder`` grades ``/autograder/submission/<assignment>.py`` with the same
isolated grader as the command line (:func:`course_utils.homework.grader.grade`) and writes
``/autograder/results/results.json``: one test per check (its points, the grader's message;
hidden checks visible only after the grades are published). ``$AUTOGRADER_ROOT`` replaces
``/autograder`` (for testing the zip anywhere).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from .generate import solution_path
from .grader import REFERENCE_DIR, grade

__all__ = ["make_gradescope_zip", "write_results"]

_REPO = Path(__file__).resolve().parents[2]
_TIME = (1980, 1, 1, 0, 0, 0)

_SETUP = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
cd /autograder/source
python3 -m pip install --quiet .
"""

_RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; AUTOGRADER_ROOT replaces /autograder for tests.
set -uo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
mkdir -p "$ROOT/results"
cd "$ROOT/source"
python3 -m course_utils.homework.gradescope {assignment} "$ROOT/submission" \\
    "$ROOT/source/{assignment}.npz" "$ROOT/results/results.json"
"""


def write_results(assignment: str, submission: str | os.PathLike, references: str | os.PathLike,
                  results: str | os.PathLike) -> dict[str, Any]:
    """Grade ``submission/<assignment>.py`` and write Gradescope's ``results.json``; returns it.

    A missing file scores 0 with a message saying which file Gradescope expected."""
    module = Path(submission) / f"{assignment}.py"
    if module.is_file():
        report = grade(assignment, module, Path(references), verbose=False)
        tests = [
            {
                "name": result.check.id,
                "score": result.check.points if result.passed else 0,
                "max_score": result.check.points,
                "output": result.message,
                "visibility": "after_published" if result.check.hidden else "visible",
            }
            for result in report.results
        ]
        payload: dict[str, Any] = {"tests": tests, "output": report.summary()}
    else:
        found = sorted(path.name for path in Path(submission).glob("*")) if Path(submission).is_dir() else []
        payload = {
            "score": 0,
            "output": f"no {module.name} in the submission (found: {', '.join(found) or 'nothing'}); "
            f"upload the file {module.name}",
        }
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    Path(results).write_text(json.dumps(payload, indent=2))
    return payload


def _package_files() -> dict[str, bytes]:
    """This package's source (no caches), its pyproject and README, as ``{zip path: bytes}``."""
    files = {name: (_REPO / name).read_bytes() for name in ("pyproject.toml", "README.md")}
    for path in sorted((_REPO / "course_utils").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".json"):
            files[str(path.relative_to(_REPO))] = path.read_bytes()
    return files


def make_gradescope_zip(assignment: str, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/<assignment>_gradescope.zip`` (see the module docstring); returns its path."""
    solution_path(assignment)  # an unknown assignment fails here, with the list of assignments
    references = REFERENCE_DIR / f"{assignment}.npz"
    entries = {
        "setup.sh": _SETUP.encode(),
        "run_autograder": _RUN.format(assignment=assignment).encode(),
        f"{assignment}.npz": references.read_bytes(),
        f"{assignment}.json": references.with_suffix(".json").read_bytes(),
        **_package_files(),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"{assignment}_gradescope.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            bundle.writestr(info, entries[name])
    return archive


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 5:
        raise SystemExit("usage: python -m course_utils.homework.gradescope ASSIGNMENT SUBMISSION REFERENCES RESULTS")
    write_results(*sys.argv[1:])
