"""The process that runs a student's code for the grader; the grader's own code never does.

:func:`course_utils.homework.grader.grade` starts ``python -m course_utils.homework.sandbox``
in a fresh temporary folder (its working directory) with three arguments: the student's file,
the checks' inputs (``inputs.npz`` + ``inputs.json``, written by the grader: no reference
outputs) and the number of a file descriptor to report on. This process imports the student's
file, then for every check number the grader writes on its stdin (one per line) it calls the
student's function on fresh copies of that check's inputs and answers with one JSON line on the
report descriptor::

    {"started": true}                                 before importing the student's file
    {"ready": true}                                   after the import (or {"import_error": "..."})
    {"check": 3, "status": "ok", "output": "output-3.npy", "mutated": null}
    {"check": 4, "status": "todo" | "error" | "fail", "message": "..."}

The output is written with ``numpy.save(..., allow_pickle=False)``, so the grader never
unpickles anything a student's code made. The student's prints go to a log file, not to the
report. The grader, not this process, compares outputs with the reference data; whatever a
submission patches, interrupts or breaks here cannot change a score, and a crash, an exit or a
hang ends only this process (see the grader's threat model in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np
import torch

from .grader import as_array, decode_arguments, load_module

__all__ = ["main"]


def _where(error: BaseException, module_file: str) -> str:
    """``" (hw1.py, line 12)"`` for the deepest traceback frame inside the student's file."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == module_file]
    return f" ({Path(module_file).name}, line {frames[-1].lineno})" if frames else ""


def _run_one(module: ModuleType, module_file: str, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict:
    """Call the check's function; the answer for the grader (without the check number)."""
    function = getattr(module, entry["function"], None)
    if not callable(function):
        return {"status": "error", "message": f"{Path(module_file).name} has no function {entry['function']!r}"}
    inputs = decode_arguments(entry["arguments"], arrays)
    try:
        output = function(**inputs)
    except NotImplementedError as error:
        return {"status": "todo", "message": f"not implemented: {error}"}
    except BaseException as error:  # KeyboardInterrupt, SystemExit too: a student's bug is a 0, not a crash
        return {"status": "error", "message": f"{type(error).__name__}: {error}{_where(error, module_file)}"}
    try:
        array = np.array(as_array(output), order="C")  # a copy; 0-d stays 0-d
    except BaseException as error:  # a returned object whose conversion raises anything
        return {
            "status": "fail",
            "message": f"{error}"
            if isinstance(error, TypeError)
            else f"returned an object that cannot be read as an array ({type(error).__name__}: {error})",
        }
    untouched = decode_arguments(entry["arguments"], arrays)
    mutated = next(
        (
            name
            for name, value in inputs.items()
            if isinstance(value, torch.Tensor) and not torch.equal(value, untouched[name])
        ),
        None,
    )
    return {"status": "ok", "array": array, "mutated": mutated}


def _serve(module_path: str, inputs: Path, report: TextIO) -> None:
    arrays = dict(np.load(inputs.with_suffix(".npz"), allow_pickle=False))
    entries = json.loads(inputs.with_suffix(".json").read_text())
    module_file = str(Path(module_path).resolve())
    report.write(json.dumps({"started": True}) + "\n")  # the grader's clocks count the student's code from here
    report.flush()
    try:
        module = load_module(module_file, "_graded_submission")
    except BaseException as error:  # SyntaxError, an exception or sys.exit() at import time
        report.write(json.dumps({"import_error": f"{type(error).__name__}: {error}"}) + "\n")
        report.flush()
        return
    report.write(json.dumps({"ready": True}) + "\n")
    report.flush()
    for line in sys.stdin:
        number = int(line)
        answer = _run_one(module, module_file, entries[number], arrays)
        if answer["status"] == "ok":
            name = f"output-{number}.npy"
            np.save(name, answer.pop("array"), allow_pickle=False)
            answer["output"] = name
        report.write(json.dumps({"check": number, **answer}) + "\n")
        report.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_utils.homework.sandbox", description=__doc__)
    parser.add_argument("module", help="the student's file")
    parser.add_argument("inputs", help="inputs.npz / inputs.json written by the grader (without suffix)")
    parser.add_argument("report_fd", type=int, help="file descriptor for the JSON answers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = os.fdopen(args.report_fd, "w")
    _serve(args.module, Path(args.inputs), report)


if __name__ == "__main__":
    main()
