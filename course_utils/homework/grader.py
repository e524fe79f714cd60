"""The autograder: call a student's functions on stored inputs and compare with reference outputs.

Each assignment's solution source declares its checks as a ``CHECKS`` list of :class:`Check`:
which function is called, a seeded maker of its inputs, the points it is worth and whether it
is hidden. ``python -m course_utils.homework references`` calls every check's maker with a
generator seeded from the check's id, stores the inputs and the solution's output in
``data/homework/<assignment>.npz`` (with a sha256 sidecar) and the grader reads only that file:
it needs neither the solutions nor a model checkpoint.

A check passes when the student's output has the reference's shape, its relative error

    rel_error(x, y) = max over elements of |x - y| / max(1e-8, |x| + |y|)     (cs231n style)

is at most :data:`TOLERANCE`, and the function left its inputs unchanged. The checks run in
float64, so a correct implementation lands near 1e-16. A function that raises
``NotImplementedError`` (a stub) or any other error scores 0 for that check; the grader itself
never crashes on a student's module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from ..data.core import DATA_DIR, CacheError, load_array_cache, save_array_cache
from ..models import ZFNet, ZFNetConfig
from .mistakes import MISTAKES

__all__ = [
    "TOLERANCE",
    "REFERENCE_DIR",
    "Check",
    "StoredCheck",
    "References",
    "CheckResult",
    "GradeReport",
    "rel_error",
    "check_seed",
    "random_zfnet",
    "build_references",
    "write_references",
    "load_references",
    "default_references",
    "handout_references",
    "judge",
    "as_array",
    "decode_arguments",
    "CHECK_SECONDS",
    "TOTAL_SECONDS",
    "load_module",
    "run_check",
    "grade",
]

#: Largest relative error (see :func:`rel_error`) a passing output may have.
TOLERANCE = 1e-6
#: Where ``python -m course_utils.homework references`` writes the full reference data.
REFERENCE_DIR = DATA_DIR / "homework"
#: Version of the reference file layout; stored in the sidecar and checked on loading.
FORMAT = 1
_METADATA_KEY = "__checks__"


@dataclass(frozen=True)
class Check:
    """One graded call of a student's function.

    Attributes:
        function: name of the function called; it is also the exercise the points count for.
        name: short description, unique per function (e.g. ``"overlapping_3x3_windows"``).
        make_inputs: ``generator -> {argument: value}``; values may be tensors, numbers,
            strings, (nested) tuples of those, or a :class:`~course_utils.models.ZFNet`.
        points: what passing it is worth.
        hidden: hidden checks are left out of the student version and of the handout's data.
    """

    function: str
    name: str
    make_inputs: Callable[[torch.Generator], dict[str, Any]]
    points: int = 1
    hidden: bool = False

    @property
    def id(self) -> str:
        return f"{self.function}/{self.name}"


def check_seed(assignment: str, check_id: str) -> int:
    """Seed of a check's generator: stable across runs and independent of the checks' order."""
    return zlib.crc32(f"{assignment}/{check_id}".encode())


def rel_error(x: Any, y: Any) -> float:
    """``max |x - y| / max(1e-8, |x| + |y|)`` over the elements of two same-shaped arrays.

    0.0 for identical (or empty) arrays, NaN when either holds NaN.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs two arrays of the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, reported as a failure
        return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def random_zfnet(
    generator: torch.Generator,
    image_size: int = 16,
    num_classes: int = 4,
    conv_widths: tuple[int, int, int, int, int] = (6, 8, 8, 8, 8),
    fc_widths: tuple[int, int] = (16, 16),
) -> ZFNet:
    """A small float64 :class:`~course_utils.models.ZFNet` in eval mode, its weights drawn from
    ``generator`` (He-scaled normals, biases ``N(0, 0.1^2)``): a model for checks that needs no
    checkpoint."""
    config = ZFNetConfig(num_classes=num_classes, image_size=image_size, conv_widths=conv_widths, fc_widths=fc_widths)
    model = ZFNet(config).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            scale = (2.0 / parameter[0].numel()) ** 0.5 if parameter.ndim > 1 else 0.1
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * scale)
    return model


# --------------------------------------------------------------------------------------------
# Storing inputs and outputs as arrays
# --------------------------------------------------------------------------------------------


def _encode(key: str, value: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON description of one argument; its tensors go to ``arrays`` under ``key``."""
    if isinstance(value, torch.Tensor):
        arrays[key] = value.detach().cpu().numpy().copy()
        return {"tensor": key}
    if isinstance(value, ZFNet):
        parameter = next(value.parameters())
        for name, tensor in value.state_dict().items():
            arrays[f"{key}/{name}"] = tensor.cpu().numpy().copy()
        return {"zfnet": value.config.to_dict(), "dtype": str(parameter.dtype).removeprefix("torch."), "prefix": key}
    if isinstance(value, nn.Module):
        raise TypeError(
            f"argument {key!r}: checks can pass a course_utils.models.ZFNet, not a "
            f"{type(value).__name__}; build the model with random_zfnet()"
        )
    try:
        return {"value": json.loads(json.dumps(value))}  # as it will read back: tuples become lists
    except TypeError as error:
        raise TypeError(
            f"argument {key!r}: checks can pass tensors, numbers, strings and tuples, got {type(value).__name__}"
        ) from error


def _as_tuples(value: Any) -> Any:
    """JSON lists back to tuples, recursively."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value


def _decode(description: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """A fresh copy of one stored argument (tensors the caller may modify freely)."""
    if "tensor" in description:
        return torch.from_numpy(arrays[description["tensor"]].copy())
    if "zfnet" in description:
        model = ZFNet(ZFNetConfig.from_dict(description["zfnet"])).to(getattr(torch, description["dtype"]))
        prefix = description["prefix"] + "/"
        state = {
            name[len(prefix) :]: torch.from_numpy(array.copy())
            for name, array in arrays.items()
            if name.startswith(prefix)
        }
        model.load_state_dict(state)
        return model.eval().requires_grad_(False)
    return _as_tuples(description["value"])


def decode_arguments(arguments: dict[str, dict[str, Any]], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fresh copies of a check's stored arguments, ``{name: value}``."""
    return {name: _decode(description, arrays) for name, description in arguments.items()}


def as_array(output: Any) -> np.ndarray:
    """A function's result as an array: tensors, numbers and (nested) sequences of numbers."""
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().numpy()
    try:
        array = np.asarray(output)
    except ValueError:  # ragged sequences
        array = np.empty(0, dtype=object)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"returned {type(output).__name__}, which is not a tensor or a number")
    return array


@dataclass
class StoredCheck:
    """A check as the grader reads it: stored inputs and the reference output."""

    function: str
    name: str
    points: int
    hidden: bool
    arguments: dict[str, dict[str, Any]]
    expected: np.ndarray
    arrays: dict[str, np.ndarray] = field(repr=False)
    #: ``(title, advice, output)`` of each common mistake whose output differs from ``expected``.
    mistakes: list[tuple[str, str, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return f"{self.function}/{self.name}"

    def inputs(self) -> dict[str, Any]:
        """Fresh copies of the check's arguments, ready to pass as ``function(**inputs)``."""
        return decode_arguments(self.arguments, self.arrays)


@dataclass
class References:
    """Everything the grader needs for one assignment.

    ``hidden_left_out`` and ``hidden_points_left_out`` count the hidden checks a student's
    copy does not contain (0 in the instructor's full file).
    """

    assignment: str
    checks: list[StoredCheck]
    hidden_left_out: int = 0
    hidden_points_left_out: int = 0

    def public(self) -> References:
        """The same references without the hidden checks (what a handout ships)."""
        hidden = [check for check in self.checks if check.hidden]
        return References(
            self.assignment,
            [check for check in self.checks if not check.hidden],
            self.hidden_left_out + len(hidden),
            self.hidden_points_left_out + sum(check.points for check in hidden),
        )


def build_references(assignment: str, module: ModuleType) -> References:
    """Run every check of ``module.CHECKS`` through the module's own (solution) functions."""
    checks = getattr(module, "CHECKS", None)
    if not isinstance(checks, list) or not all(isinstance(check, Check) for check in checks):
        raise ValueError(f"{module.__name__} must define CHECKS, a list of course_utils.homework.Check")
    ids = [check.id for check in checks]
    duplicates = sorted({check_id for check_id in ids if ids.count(check_id) > 1})
    if duplicates:
        raise ValueError(f"{module.__name__}: check ids must be unique, repeated: {duplicates}")
    stored = []
    for check in checks:
        arrays: dict[str, np.ndarray] = {}
        generator = torch.Generator().manual_seed(check_seed(assignment, check.id))
        arguments = {
            name: _encode(f"{check.id}/{name}", value, arrays) for name, value in check.make_inputs(generator).items()
        }
        # the solution sees the stored copies, exactly what a student's function will see
        expected = as_array(getattr(module, check.function)(**decode_arguments(arguments, arrays)))
        stored.append(StoredCheck(check.function, check.name, check.points, check.hidden, arguments, expected, arrays))
    _record_mistakes(assignment, module, stored)
    return References(assignment, stored)


def _record_mistakes(assignment: str, module: ModuleType, stored: list[StoredCheck]) -> None:
    """Run every check with each of the assignment's common mistakes in place of its function
    (:data:`course_utils.homework.mistakes.MISTAKES`) and keep the outputs that fail the check."""
    for mistake in MISTAKES.get(assignment, ()):
        solution = getattr(module, mistake.function)
        setattr(module, mistake.function, mistake.make(module))
        try:
            for check in stored:
                try:
                    output = as_array(getattr(module, check.function)(**check.inputs()))
                except Exception:  # a mistake that crashes on these inputs is not recognisable
                    continue
                if output.shape != check.expected.shape or not rel_error(output, check.expected) <= TOLERANCE:
                    check.mistakes.append((mistake.title, mistake.advice, output))
        finally:
            setattr(module, mistake.function, solution)


def _info(assignment: str) -> dict[str, Any]:
    return {"assignment": assignment, "format": FORMAT}


def write_references(references: References, path: str | Path) -> Path:
    """Write ``references`` to ``path`` (.npz, atomically, with a sha256 ``.json`` sidecar)."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for check in references.checks:
        arrays.update(check.arrays)
        arrays[f"{check.id}/expected"] = check.expected
        for number, (_, _, output) in enumerate(check.mistakes):
            arrays[f"{check.id}/mistake/{number}"] = output
        entries.append(
            {
                "function": check.function,
                "name": check.name,
                "points": check.points,
                "hidden": check.hidden,
                "arguments": check.arguments,
                "mistakes": [[title, advice] for title, advice, _ in check.mistakes],
            }
        )
    metadata = {
        "checks": entries,
        "hidden_left_out": references.hidden_left_out,
        "hidden_points_left_out": references.hidden_points_left_out,
    }
    arrays[_METADATA_KEY] = np.array(json.dumps(metadata, sort_keys=True))
    written = save_array_cache(path, arrays, _info(references.assignment))
    if written is None:
        raise OSError(f"could not write the reference data {path}; see the warning above")
    return written


def load_references(assignment: str, path: str | Path) -> References:
    """Read reference data written by :func:`write_references`, checking its hash and assignment."""
    path = Path(path)
    try:
        arrays = load_array_cache(path, _info(assignment))
        metadata = json.loads(str(arrays.pop(_METADATA_KEY)))
    except (CacheError, KeyError, ValueError, OSError) as error:
        raise ValueError(
            f"the reference data {path} cannot be used for {assignment} ({error}). Instructors: "
            f"regenerate it with `python -m course_utils.homework references {assignment}`; "
            "students: unpack the handout again."
        ) from error
    checks = []
    for entry in metadata["checks"]:
        check_id = f"{entry['function']}/{entry['name']}"
        own = {name: array for name, array in arrays.items() if name.startswith(check_id + "/")}
        expected = own.pop(f"{check_id}/expected")
        mistakes = [
            (title, advice, own.pop(f"{check_id}/mistake/{number}"))
            for number, (title, advice) in enumerate(entry.get("mistakes", []))
        ]
        checks.append(
            StoredCheck(
                entry["function"],
                entry["name"],
                entry["points"],
                entry["hidden"],
                entry["arguments"],
                expected,
                own,
                mistakes,
            )
        )
    return References(assignment, checks, metadata["hidden_left_out"], metadata["hidden_points_left_out"])


def default_references(assignment: str) -> Path:
    """The course's reference data for ``assignment``, ``data/homework/<assignment>.npz`` (all
    checks, hidden ones included). The grader never picks up a file lying beside the submission:
    a handout's public ``<assignment>_references.npz`` is used only when passed explicitly."""
    course = REFERENCE_DIR / f"{assignment}.npz"
    if course.exists():
        return course
    raise FileNotFoundError(
        f"no reference data for {assignment} at {course}. Instructors: `python -m course_utils.homework "
        f"references {assignment}`; students grading a handout without the course repository: pass the "
        f"handout's public data, --references {assignment}_references.npz (references= in Python)."
    )


def handout_references(assignment: str, folder: str | Path) -> Path:
    """The references a student's own checks use in ``folder``: the handout's public
    ``<assignment>_references.npz`` there, else the course's (:func:`default_references`)."""
    beside = Path(folder) / f"{assignment}_references.npz"
    return beside if beside.exists() else default_references(assignment)


# --------------------------------------------------------------------------------------------
# Running a student's functions
# --------------------------------------------------------------------------------------------


def load_module(path: str | Path, name: str = "student_module") -> ModuleType:
    """Import the Python file at ``path`` afresh (edits since the last call are picked up)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` is ``"pass"``, ``"fail"``, ``"todo"`` (not implemented) or
    ``"error"``; ``message`` says why it did not pass."""

    check: StoredCheck
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _where(error: BaseException, module: ModuleType) -> str:
    """``" (hw1.py, line 12)"`` for the deepest traceback frame inside the student's file."""
    filename = getattr(module, "__file__", None)
    if filename is None:
        return ""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == filename]
    return f" ({Path(filename).name}, line {frames[-1].lineno})" if frames else ""


def judge(check: StoredCheck, result: np.ndarray, mutated: str | None = None) -> CheckResult:
    """Compare a function's output (as an array) with the check's reference: a known common
    mistake is named (with what to change), then shape, dtype (float results keep the reference's
    precision, as the assignments ask), inputs left unchanged (``mutated`` names an input changed
    in place) and relative error."""
    same_shape = result.shape == check.expected.shape
    if not (same_shape and rel_error(result, check.expected) <= TOLERANCE):
        for title, advice, output in check.mistakes:
            if output.shape == result.shape and rel_error(result, output) <= TOLERANCE:
                return CheckResult(check, "fail", f"{title}: {advice}")
    if not same_shape:
        return CheckResult(check, "fail", f"returned shape {result.shape}, expected {check.expected.shape}")
    if check.expected.dtype.kind == "f" and result.dtype.kind == "f" and result.dtype != check.expected.dtype:
        return CheckResult(
            check, "fail", f"returned {result.dtype}, the reference is {check.expected.dtype}: keep the inputs' dtype"
        )
    if mutated is not None:
        return CheckResult(
            check, "fail", f"changed its input {mutated!r} in place; work on a copy (e.g. {mutated}.clone())"
        )
    relative = rel_error(result, check.expected)
    if not relative <= TOLERANCE:
        return CheckResult(check, "fail", f"relative error {relative:.1e} > {TOLERANCE:.0e}")
    return CheckResult(check, "pass", f"relative error {relative:.1e}")


def run_check(check: StoredCheck, module: ModuleType) -> CheckResult:
    """Call ``module.<check.function>`` on the check's inputs *in this process* and
    :func:`judge` it: for a student's own tests (the generated pytest file). The grader runs
    submissions in a separate process instead (:func:`grade`)."""
    function = getattr(module, check.function, None)
    if not callable(function):
        name = Path(module.__file__ or "").name or module.__name__
        return CheckResult(check, "error", f"{name} has no function {check.function!r}")
    inputs = check.inputs()
    try:
        output = function(**inputs)
    except NotImplementedError as error:
        return CheckResult(check, "todo", f"not implemented: {error}")
    except Exception as error:  # a student's bug must not stop the tests
        return CheckResult(check, "error", f"{type(error).__name__}: {error}{_where(error, module)}")
    try:
        result = as_array(output)
    except TypeError as error:
        return CheckResult(check, "fail", f"{error}; expected an array of shape {check.expected.shape}")
    untouched = check.inputs()
    mutated = next(
        (n for n, v in inputs.items() if isinstance(v, torch.Tensor) and not torch.equal(v, untouched[n])), None
    )
    return judge(check, result, mutated)


# --------------------------------------------------------------------------------------------
# Running a submission in its own process
# --------------------------------------------------------------------------------------------

#: Default time limits of :func:`grade` (seconds): per check, for the whole submission, and for
#: importing the submission. They count the student's code only: the grading process's own
#: start (Python, numpy, torch), which a loaded machine can slow several-fold, has its own limit.
CHECK_SECONDS = 60.0
TOTAL_SECONDS = 600.0
IMPORT_SECONDS = 120.0
STARTUP_SECONDS = 300.0


class _Ended(Exception):
    """The sandbox process ended or timed out; the message says what to tell the student."""


class _Sandbox:
    """One ``python -m course_utils.homework.sandbox`` process serving the checks of one submission."""

    def __init__(self, module_path: Path, inputs: Path, workdir: Path, timeout: float) -> None:
        self.workdir = workdir
        read_fd, write_fd = os.pipe()
        environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        package_root = str(Path(__file__).resolve().parents[2])
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        self.log = open(workdir / "sandbox.log", "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "course_utils.homework.sandbox", str(module_path), str(inputs), str(write_fd)],
                cwd=workdir,
                stdin=subprocess.PIPE,
                stdout=self.log,
                stderr=self.log,
                pass_fds=(write_fd,),
                env=environment,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, args=(os.fdopen(read_fd, "r"),), daemon=True).start()
        start = time.monotonic()
        self._answer(
            STARTUP_SECONDS,
            f"the grading process did not start within {STARTUP_SECONDS:.0f} s (before importing "
            f"{module_path.name}): the machine is overloaded; grade again when it is idle",
            ended_message="the grading process failed before importing the submission (exit code {code}): "
            "check that `python -c 'import torch, course_utils'` works in this environment",
        )
        self.startup_seconds = time.monotonic() - start
        first = self._answer(timeout, f"importing {module_path.name} did not finish within {timeout:.0f} s")
        if "import_error" in first:
            self.close()
            raise _Ended(f"could not import {module_path.name}: {first['import_error']}")

    def _read(self, stream: TextIO) -> None:
        with stream:
            for line in stream:
                try:
                    self.answers.put(json.loads(line))
                except json.JSONDecodeError:
                    continue  # not an answer: ignore what else reaches the descriptor
        self.answers.put(None)

    def _answer(
        self,
        timeout: float,
        timeout_message: str,
        ended_message: str = "the grading process ended (exit code {code}): the code called exit() or crashed",
    ) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            self.close()
            raise _Ended(timeout_message) from None
        if answer is None:
            code = self.process.wait()
            self.close()
            raise _Ended(ended_message.format(code=code))
        return answer

    def run(self, number: int, timeout: float, timeout_message: str) -> dict[str, Any]:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(f"{number}\n".encode())
            self.process.stdin.flush()
        except OSError:
            pass  # the process is gone; _answer reports how it ended
        while True:
            answer = self._answer(timeout, timeout_message)
            if answer.get("check") == number:
                return answer

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the student's own child processes too
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait()
        self.log.close()


def _run_isolated(
    checks: Sequence[StoredCheck], module_path: Path, check_seconds: float, total_seconds: float, import_seconds: float
) -> list[CheckResult]:
    """Run every check in a sandbox process (restarted after a crash or a timeout) and judge it here.

    The total limit counts the student's code only: each sandbox's own start moves the deadline.
    """
    deadline = time.monotonic() + total_seconds
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="course-grading-") as scratch:
        workdir = Path(scratch)
        arrays: dict[str, np.ndarray] = {}
        for check in checks:
            arrays.update(check.arrays)
        np.savez(workdir / "inputs.npz", **arrays)  # type: ignore[arg-type]
        entries = [{"function": check.function, "arguments": check.arguments} for check in checks]
        (workdir / "inputs.json").write_text(json.dumps(entries))
        sandbox: _Sandbox | None = None
        import_failure: str | None = None
        try:
            for number, check in enumerate(checks):
                remaining = deadline - time.monotonic()
                if import_failure is not None:
                    results.append(CheckResult(check, "error", import_failure))
                    continue
                if remaining <= 0:
                    results.append(
                        CheckResult(
                            check, "error", f"not run: the total time limit of {total_seconds:.0f} s was reached"
                        )
                    )
                    continue
                try:
                    if sandbox is None:
                        sandbox = _Sandbox(module_path, workdir / "inputs", workdir, min(import_seconds, remaining))
                        deadline += sandbox.startup_seconds
                        remaining = deadline - time.monotonic()
                    if check_seconds <= remaining:
                        limit = check_seconds
                        message = f"did not finish within {check_seconds:.0f} s (the per-check time limit)"
                    else:
                        limit, message = remaining, f"stopped: the total time limit of {total_seconds:.0f} s was reached"
                    answer = sandbox.run(number, limit, message)
                except _Ended as ended:
                    if sandbox is None:  # the import itself failed, exited or hung: every check scores 0
                        import_failure = str(ended)
                    sandbox = None
                    results.append(CheckResult(check, "error", import_failure or str(ended)))
                    continue
                if answer["status"] != "ok":
                    results.append(CheckResult(check, answer["status"], answer["message"]))
                    continue
                try:
                    output = np.load(workdir / Path(answer["output"]).name, allow_pickle=False)
                except (OSError, ValueError) as error:
                    results.append(CheckResult(check, "fail", f"the output could not be read back ({error})"))
                    continue
                results.append(judge(check, output, answer.get("mutated")))
        finally:
            if sandbox is not None:
                sandbox.close()
    return results


@dataclass
class GradeReport:
    """Results of grading one module: per check, and scored per exercise."""

    assignment: str
    module: str
    references: str
    results: list[CheckResult]
    hidden_left_out: int = 0
    hidden_points_left_out: int = 0

    def scores(self) -> dict[str, tuple[int, int]]:
        """``{exercise: (points earned, points possible)}`` in the order of the checks."""
        scores: dict[str, tuple[int, int]] = {}
        for result in self.results:
            earned, possible = scores.get(result.check.function, (0, 0))
            points = result.check.points
            scores[result.check.function] = (earned + points * result.passed, possible + points)
        return scores

    @property
    def earned(self) -> int:
        return sum(earned for earned, _ in self.scores().values())

    @property
    def possible(self) -> int:
        return sum(possible for _, possible in self.scores().values())

    def summary(self) -> str:
        """``"hw1_deconv: unpool 2/2, deconv_step 3/3 -> 5/5"``."""
        parts = ", ".join(f"{name} {earned}/{possible}" for name, (earned, possible) in self.scores().items())
        return f"{self.assignment}: {parts} -> {self.earned}/{self.possible}"

    def details(self) -> str:
        """One line per check, then the hidden-check note and the summary."""
        labels = {"pass": "PASS", "fail": "FAIL", "todo": "TODO", "error": "ERROR"}
        lines = [f"{self.assignment}: grading {self.module}", f"  reference data: {self.references}"]
        hinted: set[str] = set()  # a stub's hint is shown once per function
        for result in self.results:
            check = result.check
            points = f"{check.points} point{'s' if check.points != 1 else ''}"
            hidden = ", hidden" if check.hidden else ""
            message = result.message
            if result.status == "todo":
                message = "not implemented" if check.function in hinted else message
                hinted.add(check.function)
            lines.append(f"  {labels[result.status]:5} {check.id} ({points}{hidden}): {message}")
        if self.hidden_left_out:
            lines.append(
                f"  + {self.hidden_left_out} hidden checks ({self.hidden_points_left_out} points) "
                "that only your instructor's grader runs"
            )
        lines.append(self.summary())
        return "\n".join(lines)


def grade(
    assignment: str,
    module: str | Path | ModuleType | None = None,
    references: str | Path | None = None,
    exercises: Sequence[str] | None = None,
    verbose: bool = True,
    file: TextIO | None = None,
    check_seconds: float = CHECK_SECONDS,
    total_seconds: float = TOTAL_SECONDS,
    import_seconds: float = IMPORT_SECONDS,
) -> GradeReport:
    """Grade a student's functions for ``assignment`` and print the score per exercise.

    The submission runs in its own process (``python -m course_utils.homework.sandbox``, in a
    temporary working folder): the grader only sends it the checks' inputs and judges the arrays
    it returns, so a submission that exits, crashes, hangs, raises ``KeyboardInterrupt``,
    returns something that is not an array or patches the grader scores 0 for the checks it
    spoils, with a message, and nothing else.

    Args:
        assignment: e.g. ``"hw1_deconv"``.
        module: the student's file (default: ``<assignment>.py`` in the current folder); an
            imported module is graded from its file.
        references: the reference data (default: the course's, :func:`default_references`).
        exercises: grade only these functions (default: all).
        verbose: print one line per check and the summary to ``file`` (default: stdout).
        check_seconds, total_seconds, import_seconds: time limits per check, for the whole
            submission, and for importing it; all three count the student's code only, not the
            start of the grading process.
    """
    if module is None:
        module = Path(f"{assignment}.py")
        if not module.is_file():
            raise FileNotFoundError(
                f"no {module} in the current folder ({Path.cwd()}); run the grader in the folder of "
                f"your handout or pass the file: --module path/to/{assignment}.py"
            )
    if isinstance(module, ModuleType):
        if not getattr(module, "__file__", None):
            raise ValueError(f"module {module.__name__} has no file to grade; pass the path of the student's file")
        module = Path(str(module.__file__))
    module_path = Path(module).resolve()
    if not module_path.is_file():
        raise FileNotFoundError(f"no such file: {module_path}")
    reference_path = Path(references).resolve() if references is not None else default_references(assignment)
    data = load_references(assignment, reference_path)
    checks = data.checks
    if exercises is not None:
        unknown = sorted(set(exercises) - {check.function for check in checks})
        if unknown:
            names = list(dict.fromkeys(check.function for check in checks))
            raise ValueError(f"unknown exercises {unknown} for {assignment}; its exercises are {names}")
        checks = [check for check in checks if check.function in exercises]
    results = _run_isolated(checks, module_path, check_seconds, total_seconds, import_seconds)
    report = GradeReport(
        assignment,
        str(module_path),
        str(reference_path),
        results,
        data.hidden_left_out if exercises is None else 0,
        data.hidden_points_left_out if exercises is None else 0,
    )
    if verbose:
        print(report.details(), file=file or sys.stdout)
    return report
