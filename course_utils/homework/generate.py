"""Student versions of the homework, generated from the solution sources.

A solution source (``course_utils/homework/solutions/<assignment>.py``) is a plain module: its
docstring is the task, each exercise a function whose body holds one solution block::

    def unpool(signal: Tensor, switches: Tensor, input_size: tuple[int, int]) -> Tensor:
        \"\"\"What to implement, with shapes.\"\"\"
        # BEGIN SOLUTION
        # HINT: what to use (one or more HINT lines, joined into the stub's message)
        ...the reference code...
        # END SOLUTION

and its ``CHECKS`` list says what the grader calls. The student version replaces every block
with ``raise NotImplementedError("<function>: <hint>")`` and drops the checks written with
``hidden=True`` (with the comment lines right above them). Beside the stubs it gets a notebook
that walks through the exercises, a README and a pytest file of the public checks.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import nbformat

from .grader import Check

__all__ = [
    "ASSIGNMENTS",
    "SOLUTION_DIR",
    "SolutionSourceError",
    "Exercise",
    "solution_path",
    "solution_module",
    "strip_solutions",
    "remove_hidden_checks",
    "student_module_source",
    "exercises",
    "student_files",
    "write_student_versions",
]

#: The assignments, in course order; each has ``solutions/<name>.py``.
ASSIGNMENTS = ("hw1_deconv", "hw2_occlusion", "hw3_correspondence", "hw4_receptive_field")
SOLUTION_DIR = Path(__file__).resolve().parent / "solutions"

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
HINT = "# HINT:"
#: Longest line of a generated ``raise NotImplementedError(...)``.
LINE_LENGTH = 100


class SolutionSourceError(ValueError):
    """A solution source breaks the marker rules; the message names the file and line."""


def solution_path(assignment: str) -> Path:
    """The solution source of ``assignment``; ``ValueError`` listing the assignments if unknown."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {assignment!r}; the assignments are {', '.join(ASSIGNMENTS)}")
    return SOLUTION_DIR / f"{assignment}.py"


def solution_module(assignment: str) -> ModuleType:
    """The imported solution source of ``assignment``."""
    solution_path(assignment)
    return importlib.import_module(f"course_utils.homework.solutions.{assignment}")


# --------------------------------------------------------------------------------------------
# Source transformations
# --------------------------------------------------------------------------------------------


def _enclosing_functions(tree: ast.Module) -> dict[int, str]:
    """``{line: name of the innermost function containing it}``."""
    lines: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                # ast.walk visits outer functions first, so inner ones overwrite them
                lines[line] = node.name
    return lines


def _raise_statement(indent: str, message: str) -> str:
    """``raise NotImplementedError("message")``, wrapped to :data:`LINE_LENGTH`."""
    one_line = f"{indent}raise NotImplementedError({json.dumps(message)})\n"
    if len(one_line) <= LINE_LENGTH + 1:
        return one_line
    width = LINE_LENGTH - len(indent) - 7  # 4 spaces of indentation, 2 quotes, 1 joining space
    chunks = textwrap.wrap(message, width, break_long_words=False, break_on_hyphens=False)
    literals = [json.dumps(chunk + " ") for chunk in chunks[:-1]] + [json.dumps(chunks[-1])]
    body = "".join(f"{indent}    {literal}\n" for literal in literals)
    return f"{indent}raise NotImplementedError(\n{body}{indent})\n"


def strip_solutions(source: str, filename: str = "<solution>") -> str:
    """Replace every solution block of ``source`` with a ``raise NotImplementedError(hint)``.

    Rules (a :class:`SolutionSourceError` names the line that breaks one): ``# BEGIN
    SOLUTION`` and ``# END SOLUTION`` stand alone on their lines, with the same indentation,
    inside a function, not nested; each block has at least one ``# HINT:`` line.
    """
    functions = _enclosing_functions(ast.parse(source, filename))
    output: list[str] = []
    block: dict | None = None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        where = f"{filename}, line {number}"
        if stripped == BEGIN:
            if block is not None:
                raise SolutionSourceError(
                    f"{where}: {BEGIN} inside the block opened on line {block['line']}; close it with {END} first"
                )
            if number not in functions:
                raise SolutionSourceError(f"{where}: a solution block must be inside a function body")
            block = {"line": number, "indent": indent, "hints": [], "function": functions[number]}
        elif stripped == END:
            if block is None:
                raise SolutionSourceError(f"{where}: {END} without a {BEGIN} before it")
            if indent != block["indent"]:
                raise SolutionSourceError(
                    f"{where}: {END} is indented differently from its {BEGIN} on line {block['line']}"
                )
            if not block["hints"]:
                raise SolutionSourceError(
                    f"{filename}, line {block['line']}: the solution block of "
                    f"{block['function']}() needs a '{HINT} ...' line for the stub"
                )
            output.append(_raise_statement(indent, f"{block['function']}: {' '.join(block['hints'])}"))
            block = None
        elif block is not None:
            if stripped.startswith(HINT):
                block["hints"].append(stripped[len(HINT) :].strip())
        elif BEGIN[2:] in line or END[2:] in line or stripped.startswith(HINT):
            raise SolutionSourceError(
                f"{where}: solution markers and {HINT} lines must stand alone on "
                f"their line inside a block, got {stripped!r}"
            )
        else:
            output.append(line)
    if block is not None:
        raise SolutionSourceError(f"{filename}, line {block['line']}: {BEGIN} is never closed with {END}")
    return "".join(output)


def _checks_list(tree: ast.Module, filename: str) -> ast.List:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == "CHECKS" for target in targets):
            if not isinstance(node.value, ast.List):
                raise SolutionSourceError(f"{filename}, line {node.lineno}: CHECKS must be a list literal [...]")
            return node.value
    raise SolutionSourceError(f"{filename} defines no CHECKS list")


def _is_hidden(element: ast.expr, filename: str) -> bool:
    for keyword in getattr(element, "keywords", []):
        if keyword.arg == "hidden":
            if not (isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, bool)):
                raise SolutionSourceError(
                    f"{filename}, line {keyword.value.lineno}: write hidden=True or "
                    "hidden=False literally, so the student version can drop hidden checks"
                )
            return keyword.value.value
    return False


def remove_hidden_checks(source: str, filename: str = "<solution>") -> str:
    """Drop the entries of the ``CHECKS`` list written with ``hidden=True``.

    Each hidden entry must occupy whole lines (nothing else before it on its first line, at
    most a comma and a comment after it on its last); comment lines right above it go too.
    """
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()  # 0-based line numbers
    for element in _checks_list(ast.parse(source, filename), filename).elts:
        if not _is_hidden(element, filename):
            continue
        first, last = element.lineno - 1, (element.end_lineno or element.lineno) - 1
        before = lines[first][: element.col_offset]
        after = lines[last][element.end_col_offset :]
        if before.strip() or not re.fullmatch(r"\s*,?\s*(#.*)?\n?", after):
            raise SolutionSourceError(
                f"{filename}, line {element.lineno}: put each hidden check on lines "
                "of its own, so the student version can drop it"
            )
        while first > 0 and lines[first - 1].strip().startswith("#"):
            first -= 1
        drop.update(range(first, last + 1))
    return "".join(line for number, line in enumerate(lines) if number not in drop)


def _header(assignment: str) -> str:
    return (
        f"# Student version of course_utils/homework/solutions/{assignment}.py, generated by\n"
        f"# `python -m course_utils.homework generate` (instructors: edit the solution source, not\n"
        f"# this file). Implement the functions that raise NotImplementedError, then check them\n"
        f"# with `python -m course_utils.homework grade {assignment} --references {assignment}_references.npz`\n"
        "# in this folder.\n"
    )


def student_module_source(assignment: str) -> str:
    """The stub module a student edits: solutions replaced by hints, hidden checks removed."""
    path = solution_path(assignment)
    filename = f"course_utils/homework/solutions/{path.name}"
    student = remove_hidden_checks(strip_solutions(path.read_text(encoding="utf-8"), filename), filename)
    ast.parse(student, filename)  # the transformations keep it valid Python
    return _header(assignment) + student


# --------------------------------------------------------------------------------------------
# Notebook, README and pytest file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One function to implement: its source header (``def`` line to docstring) and its points."""

    function: str
    header: str
    points: int
    hidden_points: int
    checks: int
    hidden_checks: int


def exercises(assignment: str) -> list[Exercise]:
    """The functions of ``assignment`` that hold a solution block, in source order."""
    path = solution_path(assignment)
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    checks: list[Check] = solution_module(assignment).CHECKS
    found = []
    for node in ast.parse(source, str(path)).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body = lines[node.lineno - 1 : node.end_lineno]
        if not any(line.strip() == BEGIN for line in body):
            continue
        docstring = node.body[0]
        if not (
            isinstance(docstring, ast.Expr)
            and isinstance(docstring.value, ast.Constant)
            and isinstance(docstring.value.value, str)
        ):
            raise SolutionSourceError(
                f"{path}, line {node.lineno}: exercise {node.name}() needs a docstring "
                "(it is the task text students read)"
            )
        own = [check for check in checks if check.function == node.name]
        public, hidden = [c for c in own if not c.hidden], [c for c in own if c.hidden]
        if not public:
            raise SolutionSourceError(f"{path}: exercise {node.name}() has no public check in CHECKS")
        found.append(
            Exercise(
                node.name,
                "\n".join(lines[node.lineno - 1 : docstring.end_lineno]),
                sum(c.points for c in public),
                sum(c.points for c in hidden),
                len(public),
                len(hidden),
            )
        )
    return found


def _title_and_task(assignment: str) -> tuple[str, str]:
    docstring = ast.get_docstring(ast.parse(solution_path(assignment).read_text(encoding="utf-8"))) or ""
    title, _, task = docstring.partition("\n")
    return title.strip().rstrip("."), task.strip()


def _points(count: int) -> str:
    return f"{count} point{'s' if count != 1 else ''}"


def _notebook(assignment: str) -> str:
    title, task = _title_and_task(assignment)
    found = exercises(assignment)
    hidden = sum(exercise.hidden_points for exercise in found)
    total = sum(exercise.points for exercise in found) + hidden
    hidden_note = f" ({hidden} of them in hidden checks that only your instructor's grader runs)" if hidden else ""
    cells = [
        nbformat.v4.new_markdown_cell(f"# {title}\n\n{task}"),
        nbformat.v4.new_markdown_cell(
            f"## How to work\n\nEdit `{assignment}.py` in this folder: replace each `raise "
            "NotImplementedError(...)` with your code (its message is a hint). After each exercise, "
            "run its check cell: it imports your file afresh, calls your function on the checks' "
            "inputs and compares the result with the reference solution (relative error at most "
            f"1e-6).\n\nThe assignment is worth {_points(total)}{hidden_note}."
        ),
        nbformat.v4.new_code_cell(
            "%load_ext autoreload\n%autoreload 2\nimport torch\n\n"
            f"import {assignment} as hw  # your file; autoreload picks up your edits\n"
            "from course_utils.homework import grade, handout_references\n\n"
            f'REFERENCES = handout_references("{assignment}", ".")  # the handout\'s data, else the course\'s'
        ),
    ]
    public_checks = [check for check in solution_module(assignment).CHECKS if not check.hidden]
    for number, exercise in enumerate(found, start=1):
        first = next(check for check in public_checks if check.function == exercise.function)
        cells += [
            nbformat.v4.new_markdown_cell(
                f"## Exercise {number}: `{exercise.function}` ({_points(exercise.points + exercise.hidden_points)})"
                f"\n\n```python\n{exercise.header}\n```"
            ),
            nbformat.v4.new_code_cell(
                "# Try it on the inputs of its first check.\n"
                f'check = next(check for check in hw.CHECKS if check.id == "{first.id}")\n'
                "inputs = check.make_inputs(torch.Generator().manual_seed(0))\n"
                f"hw.{exercise.function}(**inputs)"
            ),
            nbformat.v4.new_code_cell(
                f'report = grade("{assignment}", references=REFERENCES, exercises=["{exercise.function}"])'
            ),
        ]
    cells += [
        nbformat.v4.new_markdown_cell(
            f"## Your score\n\nThe same from a terminal in this folder: `python -m course_utils.homework "
            f"grade {assignment} --references {assignment}_references.npz` (or `pytest test_{assignment}.py` "
            "for the checks as tests)."
        ),
        nbformat.v4.new_code_cell(f'report = grade("{assignment}", references=REFERENCES)'),
    ]
    for number, cell in enumerate(cells):
        cell["id"] = f"{assignment}-{number:02d}"  # fixed ids: the file is reproducible byte for byte
    notebook = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def _readme(assignment: str) -> str:
    title, task = _title_and_task(assignment)
    found = exercises(assignment)
    rows = "".join(
        f"| `{e.function}` | {e.points + e.hidden_points} | {e.checks} | {e.hidden_checks} |\n" for e in found
    )
    return (
        f"# {title}\n\n{task}\n\n"
        "## Files\n\n"
        f"- `{assignment}.py`: the functions you implement (replace each `raise NotImplementedError(...)`; "
        "its message is a hint). The `CHECKS` at its end are the grader's public checks.\n"
        f"- `{assignment}.ipynb`: the exercises step by step, with a check after each one.\n"
        f"- `test_{assignment}.py`: the public checks as pytest tests.\n"
        f"- `{assignment}_references.npz` (in the handout): the checks' inputs and the reference outputs.\n\n"
        "## Exercises\n\n"
        "| function | points | public checks | hidden checks |\n|---|---|---|---|\n" + rows + "\n"
        "## Check your work\n\n"
        "In this folder, with `course_utils` installed:\n\n"
        "```\n"
        f"python -m course_utils.homework grade {assignment} --references {assignment}_references.npz   # score per exercise\n"
        f"pytest test_{assignment}.py                          # the same checks as tests\n"
        "```\n\n"
        "A check passes when your function returns the reference's shape, leaves its inputs unchanged "
        "and its relative error `max |x - y| / max(1e-8, |x| + |y|)` is at most 1e-6. Hidden checks "
        "(other inputs) run only in your instructor's grader.\n"
    )


def _test_file(assignment: str) -> str:
    return (
        f'"""The public checks of {assignment} as pytest tests: run `pytest` in this folder.\n\n'
        f"`python -m course_utils.homework grade {assignment} --references {assignment}_references.npz` runs the\n"
        "same checks and prints your score.\n"
        'Generated by `python -m course_utils.homework generate`."""\n'
        "from pathlib import Path\n\n"
        "import pytest\n\n"
        "from course_utils.homework import handout_references, load_module, load_references, run_check\n\n"
        f'MODULE = Path(__file__).resolve().parent / "{assignment}.py"\n'
        f'CHECKS = load_references("{assignment}", handout_references("{assignment}", MODULE.parent)).checks\n\n\n'
        '@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.id)\n'
        "def test_check(check):\n"
        "    result = run_check(check, load_module(MODULE))\n"
        "    assert result.passed, result.message\n"
    )


def student_files(assignment: str) -> dict[str, str]:
    """``{file name: text}`` of the student version of ``assignment`` (without reference data)."""
    return {
        f"{assignment}.py": student_module_source(assignment),
        f"{assignment}.ipynb": _notebook(assignment),
        "README.md": _readme(assignment),
        f"test_{assignment}.py": _test_file(assignment),
    }


def write_student_versions(out_dir: str | Path, assignments: tuple[str, ...] | list[str] = ASSIGNMENTS) -> list[Path]:
    """Write ``out_dir/<assignment>/<file>`` for each assignment; returns the paths written."""
    written = []
    for assignment in assignments:
        folder = Path(out_dir) / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in student_files(assignment).items():
            path = folder / name
            path.write_text(text, encoding="utf-8", newline="\n")
            written.append(path)
    return written
