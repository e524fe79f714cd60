"""Reference data from the solutions, and the zip handed out to students."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from .generate import ASSIGNMENTS, solution_module, solution_path, student_files
from .grader import REFERENCE_DIR, References, build_references, load_references, write_references

__all__ = ["write_solution_references", "make_handout"]

#: Timestamp of every zip entry, so that equal contents give an equal zip.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_solution_references(
    out_dir: str | Path = REFERENCE_DIR, assignments: tuple[str, ...] | list[str] = ASSIGNMENTS
) -> list[Path]:
    """Run the solutions on their checks and write ``out_dir/<assignment>.npz`` (+ ``.json``)."""
    written = []
    for assignment in assignments:
        references = build_references(assignment, solution_module(assignment))
        written.append(write_references(references, Path(out_dir) / f"{assignment}.npz"))
    return written


def make_handout(assignment: str, out_dir: str | Path, references: str | Path | None = None) -> Path:
    """Write ``out_dir/<assignment>.zip``: the student version and the public reference data.

    The zip holds one folder ``<assignment>/`` with the stubs, the notebook, the README, the
    pytest file and ``<assignment>_references.npz`` (+ its ``.json`` hash), which holds the
    public checks only. Reference data come from ``references`` (default: the course's
    ``data/homework/<assignment>.npz``). Unpacked, the folder is graded with
    ``python -m course_utils.homework grade <assignment>``; nothing else of the repository is needed.
    """
    solution_path(assignment)
    source = Path(references) if references is not None else REFERENCE_DIR / f"{assignment}.npz"
    public: References = load_references(assignment, source).public()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{assignment}.zip"
    with tempfile.TemporaryDirectory() as scratch:
        data = write_references(public, Path(scratch) / f"{assignment}_references.npz")
        entries = {
            **{name: text.encode("utf-8") for name, text in student_files(assignment).items()},
            data.name: data.read_bytes(),
            data.with_suffix(".json").name: data.with_suffix(".json").read_bytes(),
        }
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(entries):
            info = zipfile.ZipInfo(f"{assignment}/{name}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, entries[name])
    return archive
