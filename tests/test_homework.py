"""Homework: solution sources, generated student versions, reference data, grader and handouts."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import activations, correspondence, deconvnet, occlusion
from course_utils.homework import (
    REFERENCE_DIR,
    Check,
    StoredCheck,
    build_references,
    grade,
    load_module,
    load_references,
    rel_error,
    run_check,
    write_references,
)
from course_utils.homework.__main__ import main as homework_main
from course_utils.homework.generate import (
    ASSIGNMENTS,
    SOLUTION_DIR,
    SolutionSourceError,
    exercises,
    remove_hidden_checks,
    solution_module,
    solution_path,
    strip_solutions,
    write_student_versions,
)
from course_utils.homework.handout import make_handout, write_solution_references
from course_utils.homework.mistakes import MISTAKES
from course_utils.models import ZFNet

REPO = Path(__file__).resolve().parents[1]
HOMEWORK_DIR = REPO / "homework"


def references(assignment: str):
    return load_references(assignment, REFERENCE_DIR / f"{assignment}.npz")


# --------------------------------------------------------------------------------------------
# rel_error
# --------------------------------------------------------------------------------------------


def test_rel_error_by_hand():
    assert rel_error([1.0, 2.0], [1.0, 2.002]) == pytest.approx(0.002 / 4.002)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0  # 0 / max(1e-8, 0)
    assert rel_error([1e-9], [0.0]) == pytest.approx(1e-9 / 1e-8)  # the 1e-8 floor
    assert rel_error([-1.0], [1.0]) == 1.0
    assert np.isnan(rel_error([np.nan], [1.0]))
    assert rel_error(np.empty((0, 2)), np.empty((0, 2))) == 0.0


def test_rel_error_refuses_different_shapes():
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


# --------------------------------------------------------------------------------------------
# Solutions and stubs
# --------------------------------------------------------------------------------------------


def test_every_solution_source_is_an_assignment():
    assert sorted(path.stem for path in SOLUTION_DIR.glob("hw*.py")) == sorted(ASSIGNMENTS)
    with pytest.raises(ValueError, match="unknown assignment 'hw9'; the assignments are hw1_deconv"):
        solution_path("hw9")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solutions_score_full_marks_hidden_checks_included(assignment):
    report = grade(assignment, solution_path(assignment), verbose=False)
    assert [result.status for result in report.results] == ["pass"] * len(report.results)
    assert report.earned == report.possible == sum(check.points for check in solution_module(assignment).CHECKS)
    assert any(result.check.hidden for result in report.results)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_committed_stubs_score_zero_without_crashing(assignment):
    stub = HOMEWORK_DIR / assignment / f"{assignment}.py"
    report = grade(assignment, stub, references=REFERENCE_DIR / f"{assignment}.npz", verbose=False)
    assert {result.status for result in report.results} == {"todo"}
    assert report.earned == 0 and report.possible > 0
    assert all(f"not implemented: {result.check.function}: " in result.message for result in report.results)


def test_grade_command_prints_the_score_per_exercise(capsys, monkeypatch):
    monkeypatch.chdir(HOMEWORK_DIR / "hw1_deconv")  # the default module: ./hw1_deconv.py
    assert homework_main(["grade", "hw1_deconv"]) == 1
    output = capsys.readouterr().out
    assert output.splitlines()[-1] == "hw1_deconv: unpool 0/3, deconv_step 0/4 -> 0/7"
    assert "TODO  unpool/non_overlapping_2x2_windows (1 point): not implemented: unpool: Every value of" in output
    assert "TODO  unpool/overlapping_3x3_windows_sharing_switches (1 point): not implemented\n" in output
    assert homework_main(["grade", "hw1_deconv", "--solution"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "hw1_deconv: unpool 3/3, deconv_step 4/4 -> 7/7"


def test_grade_command_without_a_module_explains_what_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert homework_main(["grade", "hw2_occlusion"]) == 2
    assert "no hw2_occlusion.py in the current folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        homework_main(["generate", "--out", str(tmp_path), "hw9"])
    assert "unknown assignments ['hw9']" in capsys.readouterr().err
    assert homework_main(["grade", "hw1_deconv", "--solution", "--references", str(tmp_path / "none.npz")]) == 2
    assert "no complete cache" in capsys.readouterr().err


def test_grading_only_some_exercises():
    report = grade("hw2_occlusion", solution_path("hw2_occlusion"), exercises=["occlude"], verbose=False)
    assert {result.check.function for result in report.results} == {"occlude"}
    assert report.summary() == "hw2_occlusion: occlude 3/3 -> 3/3"
    with pytest.raises(ValueError, match=r"unknown exercises \['unpool'\] for hw2_occlusion"):
        grade("hw2_occlusion", solution_path("hw2_occlusion"), exercises=["unpool"], verbose=False)


# --------------------------------------------------------------------------------------------
# Wrong solutions lose marks
# --------------------------------------------------------------------------------------------


def mean_unpool(signal, switches, input_size):
    """Spread each value evenly over its region of the input (what the switches avoid)."""
    spread = F.interpolate(signal, size=tuple(input_size), mode="nearest")
    return spread * (signal.shape[-2] * signal.shape[-1]) / (input_size[0] * input_size[1])


def overwriting_unpool(signal, switches, input_size):
    """Like nn.MaxUnpool2d: a shared switch keeps one value instead of the sum."""
    unpooled = signal.new_zeros(*signal.shape[:2], input_size[0] * input_size[1])
    return unpooled.scatter_(2, switches.flatten(2), signal.flatten(2)).view(*signal.shape[:2], *input_size)


def logits_map(model, image, window, stride, target, fill=0.0):
    """Forgets the softmax (written into a submission beside the solution's other functions)."""
    rows = occluder_positions(image.shape[1], window, stride)  # noqa: F821
    cols = occluder_positions(image.shape[2], window, stride)  # noqa: F821
    batch = torch.stack([occlude(image, int(r), int(c), window, fill) for r in rows for c in cols])  # noqa: F821
    return model(batch)[:, target].view(len(rows), len(cols))


def occlude_in_place(image, top, left, window, fill):
    image[:, top : top + window, left : left + window] = fill
    return image


def binary_sign_disagreement(a, b):
    """Treats 0 like a negative value."""
    return ((a > 0) != (b > 0)).double().mean().item()


def receptive_field_without_padding(layers):
    size, stride = 1, 1
    for kernel, layer_stride, _ in layers:
        size += (kernel - 1) * stride
        stride *= layer_stride
    return size, stride, 0


def submission_with(assignment: str, function: str, wrong, folder: Path) -> Path:
    """The solution source with ``function`` redefined as ``wrong`` (its source, renamed): a
    submission file the isolated grader imports. The solution's other functions call the wrong
    one, so its errors propagate as a student's would."""
    source = textwrap.dedent(inspect.getsource(wrong)).replace(f"def {wrong.__name__}(", f"def {function}(", 1)
    path = folder / f"{assignment}.py"
    path.write_text(solution_path(assignment).read_text() + "\nimport torch.nn.functional as F\n\n\n" + source)
    return path


@pytest.mark.parametrize(
    "assignment, function, wrong, failing",
    [
        (
            "hw1_deconv",
            "unpool",
            mean_unpool,
            {
                "unpool/non_overlapping_2x2_windows",
                "unpool/overlapping_3x3_windows_sharing_switches",
                "unpool/batch_with_padding",
                "deconv_step/3x3_convolution_and_2x2_pool",
                "deconv_step/zf_layer_1_7x7_stride_2",
                "deconv_step/batch_5x5_stride_2_odd_size",
            },
        ),
        (
            "hw1_deconv",
            "unpool",
            overwriting_unpool,
            {
                "unpool/overlapping_3x3_windows_sharing_switches",
                "unpool/batch_with_padding",
                "deconv_step/zf_layer_1_7x7_stride_2",
                "deconv_step/batch_5x5_stride_2_odd_size",
            },
        ),  # 3x3/2 pools
        (
            "hw2_occlusion",
            "occlusion_map",
            logits_map,
            {
                "occlusion_map/window_4_stride_2",
                "occlusion_map/window_6_stride_5_dark_fill",
                "occlusion_map/window_3_stride_3",
            },
        ),
        (
            "hw3_correspondence",
            "sign_disagreement",
            binary_sign_disagreement,
            {
                "sign_disagreement/by_hand",
                "sign_disagreement/sparse_random",
                "sign_disagreement/long_sparse_random",
                "hamming_consistency/two_rows",
                "hamming_consistency/five_rows",
                "hamming_consistency/seven_rows",
                "correspondence_delta/pool5",
                "correspondence_delta/relu7",
            },
        ),  # at conv4 every feature changes: no zeros in eps, so binary signs give the same Delta
        (
            "hw4_receptive_field",
            "receptive_field",
            receptive_field_without_padding,
            {
                "receptive_field/one_convolution",
                "receptive_field/zfnet_conv1_to_pool1",
                "receptive_field/alexnet_conv1_to_pool2",
                "receptive_field/zfnet_conv1_to_pool5",
                "unit_box/zfnet_conv2_inside",
                "unit_box/zfnet_pool2_clipped_at_the_corner",
                "unit_box/alexnet_pool2_non_square_image",
            },
        ),
    ],
    ids=["mean_unpooling", "overwriting_unpooling", "no_softmax", "binary_signs", "no_padding"],
)
def test_wrong_solutions_lose_marks(tmp_path, assignment, function, wrong, failing):
    report = grade(assignment, submission_with(assignment, function, wrong, tmp_path), verbose=False)
    assert {result.check.id for result in report.results if not result.passed} == failing
    title = {
        "mean_unpool": "mean unpooling",
        "overwriting_unpool": "overwriting at shared switches",
        "logits_map": "logits instead of probabilities",
        "binary_sign_disagreement": "zero treated as a sign",
        "receptive_field_without_padding": "padding ignored",
    }[wrong.__name__]
    failed = [result for result in report.results if not result.passed]
    assert all(r.status == "fail" and r.message.startswith(f"{title}: ") for r in failed), [r.message for r in failed]
    assert report.earned < report.possible


def test_changing_an_input_in_place_fails_the_check(tmp_path):
    submission = submission_with("hw2_occlusion", "occlude", occlude_in_place, tmp_path)
    report = grade("hw2_occlusion", submission, exercises=["occlude"], verbose=False)
    assert [result.status for result in report.results] == ["fail"] * 3
    assert report.results[0].message == "changed its input 'image' in place; work on a copy (e.g. image.clone())"


# --------------------------------------------------------------------------------------------
# The grader never crashes on a student's module
# --------------------------------------------------------------------------------------------


def one_check(expected: np.ndarray, function: str = "f") -> StoredCheck:
    arrays = {"c/x": np.arange(3.0)}
    return StoredCheck(function, "c", 1, False, {"x": {"tensor": "c/x"}}, expected, arrays)


def module_with(source: str, tmp_path: Path) -> types.ModuleType:
    path = tmp_path / "student.py"
    path.write_text(textwrap.dedent(source))
    return load_module(path)


def test_run_check_reports_errors_shapes_types_and_dtypes(tmp_path):
    module = module_with(
        """
        import torch
        def f(x):
            return x.float() / 3   # float32
        def g(x):
            raise ValueError("bad")
        def h(x):
            return x[:2]
        def k(x):
            return "text"
        def ragged(x):
            return [1, [2, 3]]
    """,
        tmp_path,
    )
    expected = np.arange(3.0) / 3 + 1e-4
    result = run_check(one_check(expected), module)
    assert result.status == "fail"
    assert result.message == "returned float32, the reference is float64: keep the inputs' dtype"
    result = run_check(one_check(expected, "g"), module)
    assert (result.status, result.message) == ("error", "ValueError: bad (student.py, line 6)")
    assert run_check(one_check(expected, "h"), module).message == "returned shape (2,), expected (3,)"
    assert run_check(one_check(expected, "k"), module).message.startswith("returned str, which is not a tensor")
    assert run_check(one_check(expected, "ragged"), module).message.startswith("returned list, which is not")
    assert run_check(one_check(expected, "missing"), module).message == "student.py has no function 'missing'"
    float32 = run_check(one_check(np.arange(3.0) / 3), module)  # right values, but not the inputs' dtype
    assert (float32.status, float32.message) == (
        "fail",
        "returned float32, the reference is float64: keep the inputs' dtype",
    )


def test_a_module_that_does_not_import_scores_zero(tmp_path):
    broken = tmp_path / "hw4_receptive_field.py"
    broken.write_text("def receptive_field(layers)\n    return 1\n")
    report = grade("hw4_receptive_field", broken, verbose=False)
    assert report.earned == 0
    assert all(
        r.status == "error" and r.message.startswith("could not import hw4_receptive_field.py: SyntaxError")
        for r in report.results
    )


def test_corrupt_reference_data_is_refused_with_the_fix(tmp_path):
    path = write_references(references("hw4_receptive_field"), tmp_path / "hw4.npz")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(
        ValueError, match="sha256 mismatch.*python -m course_utils.homework references hw4_receptive_field"
    ):
        load_references("hw4_receptive_field", path)
    with pytest.raises(ValueError, match="cannot be used for hw1_deconv"):
        load_references("hw1_deconv", REFERENCE_DIR / "hw4_receptive_field.npz")


def test_checks_accept_only_storable_inputs():
    module = types.ModuleType("m")
    module.f = lambda x: x
    module.CHECKS = [Check("f", "a", lambda g: {"x": nn.Linear(2, 2)})]
    with pytest.raises(TypeError, match="argument 'f/a/x': checks can pass a course_utils.models.ZFNet, not a Linear"):
        build_references("m", module)
    module.CHECKS = [Check("f", "a", lambda g: {"x": object()})]
    with pytest.raises(TypeError, match="checks can pass tensors, numbers, strings and tuples, got object"):
        build_references("m", module)
    module.CHECKS = [Check("f", "a", lambda g: {"x": 1}), Check("f", "a", lambda g: {"x": 2})]
    with pytest.raises(ValueError, match=r"check ids must be unique, repeated: \['f/a'\]"):
        build_references("m", module)


# --------------------------------------------------------------------------------------------
# Reference data and student versions are reproducible from the solution sources
# --------------------------------------------------------------------------------------------


def test_reference_data_is_reproducible_from_the_solutions(tmp_path):
    assert write_solution_references(tmp_path) == [tmp_path / f"{a}.npz" for a in ASSIGNMENTS]
    for assignment in ASSIGNMENTS:
        committed, fresh = references(assignment), load_references(assignment, tmp_path / f"{assignment}.npz")
        assert [(c.id, c.points, c.hidden, c.arguments) for c in fresh.checks] == [
            (c.id, c.points, c.hidden, c.arguments) for c in committed.checks
        ], "regenerate with `python -m course_utils.homework references`"
        for old, new in zip(committed.checks, fresh.checks):
            assert old.arrays.keys() == new.arrays.keys()
            for name in old.arrays:
                assert old.arrays[name].dtype == new.arrays[name].dtype
                assert rel_error(old.arrays[name], new.arrays[name]) <= 1e-6, name
            assert rel_error(old.expected, new.expected) <= 1e-6, old.id


def test_committed_student_versions_are_up_to_date(tmp_path):
    write_student_versions(tmp_path)
    generated = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    committed = sorted(
        path.relative_to(HOMEWORK_DIR)
        for path in HOMEWORK_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".ipynb_checkpoints" not in path.parts
    )
    assert generated == committed
    stale = [str(p) for p in generated if (tmp_path / p).read_bytes() != (HOMEWORK_DIR / p).read_bytes()]
    assert not stale, f"regenerate with `python -m course_utils.homework generate --out homework/`: {stale}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_hints_guide_without_naming_the_calls_of_the_solution(assignment):
    """A hint says what to think about, not which functions to call: no hint names a function or
    method that its solution block calls (builtins, the assignment's own functions and the
    arguments it calls, like ``model``, aside)."""
    import ast
    import builtins

    from course_utils.homework.generate import solution_path

    source = solution_path(assignment).read_text()
    tree = ast.parse(source)
    own = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    own |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}  # e.g. model(batch)
    blocks = re.findall(r"# BEGIN SOLUTION\n(.*?)# END SOLUTION", source, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        hint = " ".join(
            line.strip()[len("# HINT:") :] for line in block.splitlines() if line.strip().startswith("# HINT:")
        )
        code = textwrap.dedent(
            "\n".join(line for line in block.splitlines() if line.strip() and not line.strip().startswith("#"))
        )
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            for node in ast.walk(ast.parse(code.replace("return ", "_ = ")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
        }
        named = sorted(name for name in called - own - set(dir(builtins)) if re.search(rf"\b{re.escape(name)}\b", hint))
        assert not named, f"{assignment}: the hint names what the solution calls ({named}): {hint}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_versions_hide_solutions_and_hidden_checks(assignment):
    student = (HOMEWORK_DIR / assignment / f"{assignment}.py").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "# HINT:", "hidden=True"):
        assert marker not in student
    module = load_module(HOMEWORK_DIR / assignment / f"{assignment}.py")
    public = [check.id for check in solution_module(assignment).CHECKS if not check.hidden]
    assert [check.id for check in module.CHECKS] == public
    assert student.count("raise NotImplementedError(") == len(exercises(assignment))
    notebook = json.loads((HOMEWORK_DIR / assignment / f"{assignment}.ipynb").read_text())
    sources = ["".join(cell["source"]) for cell in notebook["cells"]]
    for exercise in exercises(assignment):
        assert f'report = grade("{assignment}", references=REFERENCES, exercises=["{exercise.function}"])' in sources
        assert any(source.startswith("## Exercise") and f"`{exercise.function}`" in source for source in sources)


# --------------------------------------------------------------------------------------------
# Solution markers
# --------------------------------------------------------------------------------------------

SOURCE = '''\
"""Task."""
def f(x):
    """Doc."""
    y = 1
    # BEGIN SOLUTION
    # HINT: add one
    return x + y
    # END SOLUTION


def g(x):
    """Doc."""
    # BEGIN SOLUTION
    # HINT: a long hint that goes on and on about what to do, so that it cannot fit on one line of
    # HINT: the generated stub and has to be wrapped
    return x
    # END SOLUTION


CHECKS = [
    Check("f", "public", lambda g: {"x": 1}),
    # about the hidden one
    Check("f", "secret", lambda g: {"x": 2},
          hidden=True),
    Check("g", "public", lambda g: {"x": 1}, hidden=False),
]
'''


def test_student_source_by_hand():
    student = remove_hidden_checks(strip_solutions(SOURCE))
    assert (
        student
        == '''\
"""Task."""
def f(x):
    """Doc."""
    y = 1
    raise NotImplementedError("f: add one")


def g(x):
    """Doc."""
    raise NotImplementedError(
        "g: a long hint that goes on and on about what to do, so that it cannot fit on one line of "
        "the generated stub and has to be wrapped"
    )


CHECKS = [
    Check("f", "public", lambda g: {"x": 1}),
    Check("g", "public", lambda g: {"x": 1}, hidden=False),
]
'''
    )


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n",
            "line 3: # BEGIN SOLUTION inside the block opened on line 2",
        ),
        ("def f():\n    # END SOLUTION\n    return 1\n", "line 2: # END SOLUTION without a # BEGIN SOLUTION"),
        (
            "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n",
            "line 2: the solution block of f() needs a '# HINT: ...' line",
        ),
        ("def f():\n    # BEGIN SOLUTION\n    # HINT: x\n    return 1\n", "line 2: # BEGIN SOLUTION is never closed"),
        ("# BEGIN SOLUTION\n# HINT: x\n# END SOLUTION\n", "line 1: a solution block must be inside a function body"),
        (
            "def f():\n    # BEGIN SOLUTION\n    # HINT: x\n    return 1\n  # END SOLUTION\n",
            "line 5: # END SOLUTION is indented differently",
        ),
        ("def f():\n    return 1  # BEGIN SOLUTION\n", "line 2: solution markers and # HINT: lines must stand alone"),
    ],
)
def test_broken_solution_markers_are_reported_with_their_line(source, message):
    with pytest.raises(SolutionSourceError, match=re.escape(f"hw.py, {message}")):
        strip_solutions(source, "hw.py")


@pytest.mark.parametrize(
    "source, message",
    [
        ("X = 1\n", "hw.py defines no CHECKS list"),
        ("CHECKS = tuple()\n", "hw.py, line 1: CHECKS must be a list literal"),
        (
            "HIDE = True\nCHECKS = [\n    Check('f', 'a', f, hidden=HIDE),\n]\n",
            "hw.py, line 3: write hidden=True or hidden=False literally",
        ),
        ("CHECKS = [Check('f', 'a', f, hidden=True)]\n", "hw.py, line 1: put each hidden check on lines of its own"),
    ],
)
def test_broken_checks_lists_are_reported(source, message):
    with pytest.raises(SolutionSourceError, match=re.escape(message)):
        remove_hidden_checks(source, "hw.py")


# --------------------------------------------------------------------------------------------
# The solutions agree with the course's own implementations
# --------------------------------------------------------------------------------------------


def stored(assignment: str, function: str):
    return [check for check in references(assignment).checks if check.function == function]


def test_hw1_agrees_with_the_course_deconvnet():
    hw = solution_module("hw1_deconv")
    for check in stored("hw1_deconv", "unpool"):
        inputs = check.inputs()
        course = deconvnet.unpool(inputs["signal"], inputs["switches"], inputs["input_size"])
        assert torch.equal(hw.unpool(**inputs), course)
    for check in stored("hw1_deconv", "deconv_step"):
        inputs = check.inputs()
        out_channels, in_channels, kernel, _ = inputs["weight"].shape
        conv = nn.Conv2d(in_channels, out_channels, kernel, inputs["stride"], inputs["padding"]).double()
        conv.weight.data = inputs["weight"]
        unpooled = deconvnet.unpool(inputs["signal"], inputs["switches"], inputs["unpooled_size"])
        course = deconvnet.filter_transposed(F.relu(unpooled), conv, inputs["output_size"])
        assert torch.equal(hw.deconv_step(**inputs), course)


def test_hw1_deconv_step_is_the_course_projection_through_layer_1():
    """Projecting one pool1 activation with course_utils.deconvnet.project = one deconv_step."""
    hw = solution_module("hw1_deconv")
    model = ZFNet(image_size=32, conv_widths=(4, 8, 8, 8, 8), fc_widths=(16, 16)).double().eval()
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    features = F.relu(model.conv1(image))
    pooled, switches = F.max_pool2d(features, 3, 2, 1, return_indices=True)
    selection = torch.tensor([[0, 2, 3, 5]])
    signal = torch.zeros_like(pooled)
    signal[0, 2, 3, 5] = pooled[0, 2, 3, 5]
    ours = hw.deconv_step(signal, switches, model.conv1.weight.detach(), 2, 3, tuple(features.shape[-2:]), (32, 32))
    course = deconvnet.project(model, image, "pool1", selection)
    assert torch.allclose(ours, course, rtol=0, atol=1e-12)
    assert ours.abs().sum() > 0


def test_hw2_agrees_with_the_course_occlusion():
    hw = solution_module("hw2_occlusion")
    for check in stored("hw2_occlusion", "occluder_positions"):
        inputs = check.inputs()
        assert torch.equal(hw.occluder_positions(**inputs), occlusion.occluder_positions(**inputs))
    for check in stored("hw2_occlusion", "occlusion_map"):
        inputs = check.inputs()
        course = occlusion.occlusion_map(
            inputs["model"],
            inputs["image"],
            inputs["window"],
            inputs["stride"],
            fill=inputs["fill"],
            target=inputs["target"],
            layer=None,
        )
        ours = hw.occlusion_map(**inputs)
        assert ours.shape == course.probability.shape
        assert torch.allclose(ours.float(), course.probability, rtol=0, atol=1e-6)


def test_hw3_agrees_with_the_course_correspondence():
    hw = solution_module("hw3_correspondence")
    for check in stored("hw3_correspondence", "mask_square"):
        inputs = check.inputs()
        assert torch.equal(hw.mask_square(**inputs), correspondence.mask_square(**inputs))
    for check in stored("hw3_correspondence", "hamming_consistency"):
        eps = check.inputs()["eps"]
        assert hw.hamming_consistency(eps) == pytest.approx(correspondence.hamming_consistency(eps), abs=1e-7)
    for check in stored("hw3_correspondence", "correspondence_delta"):
        inputs = check.inputs()
        course = correspondence.correspondence_delta(
            inputs["model"], inputs["images"], inputs["centres"], inputs["window"], layers=(inputs["layer"],)
        )
        assert hw.correspondence_delta(**inputs) == pytest.approx(course[inputs["layer"]], abs=1e-7)


def test_hw4_agrees_with_the_course_receptive_fields():
    hw = solution_module("hw4_receptive_field")
    model = ZFNet()
    windows = []
    for name, module in model.named_children():
        if name == "flatten":
            break
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            windows.append(
                tuple(
                    value if isinstance(value, int) else value[0]
                    for value in (module.kernel_size, module.stride, module.padding)
                )
            )
        assert hw.receptive_field(windows) == activations.receptive_field(model, name)
        assert hw.unit_box(windows, 1, 2, (64, 48)) == activations.receptive_field_box(model, name, 1, 2, (64, 48))
    assert tuple(windows) == hw.ZFNET_LAYERS


# --------------------------------------------------------------------------------------------
# Handouts
# --------------------------------------------------------------------------------------------

BLOCK_SOLUTIONS = """
import runpy, sys
class NoSolutions:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("course_utils.homework.solutions"):
            raise ImportError("students have no solutions")
sys.meta_path.insert(0, NoSolutions())
sys.argv = ["course_utils.homework", "grade", "hw1_deconv", "--references", "hw1_deconv_references.npz"]
runpy.run_module("course_utils.homework", run_name="__main__")
"""


def test_handout_is_graded_standalone(tmp_path):
    archive = make_handout("hw1_deconv", tmp_path / "handouts")
    assert archive == tmp_path / "handouts" / "hw1_deconv.zip"
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == [
            "hw1_deconv/README.md",
            "hw1_deconv/hw1_deconv.ipynb",
            "hw1_deconv/hw1_deconv.py",
            "hw1_deconv/hw1_deconv_references.json",
            "hw1_deconv/hw1_deconv_references.npz",
            "hw1_deconv/test_hw1_deconv.py",
        ]
        bundle.extractall(tmp_path / "student")
    folder = tmp_path / "student" / "hw1_deconv"
    assert (folder / "hw1_deconv.py").read_bytes() == (HOMEWORK_DIR / "hw1_deconv" / "hw1_deconv.py").read_bytes()
    data = load_references("hw1_deconv", folder / "hw1_deconv_references.npz")
    assert [check.id for check in data.checks] == [
        "unpool/non_overlapping_2x2_windows",
        "unpool/overlapping_3x3_windows_sharing_switches",
        "deconv_step/3x3_convolution_and_2x2_pool",
        "deconv_step/zf_layer_1_7x7_stride_2",
    ]
    assert not any("batch" in name for check in data.checks for name in check.arrays)  # no hidden inputs
    assert (data.hidden_left_out, data.hidden_points_left_out) == (2, 2)

    # The stubs, graded in the unpacked folder by a Python that cannot import the solutions.
    run = subprocess.run(
        [sys.executable, "-c", BLOCK_SOLUTIONS], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"reference data: {folder / 'hw1_deconv_references.npz'}" in run.stdout
    assert "+ 2 hidden checks (2 points) that only your instructor's grader runs" in run.stdout
    assert run.stdout.splitlines()[-1] == "hw1_deconv: unpool 0/2, deconv_step 0/3 -> 0/5"

    # A complete answer scores full marks on the public checks; the pytest file finds the data.
    (folder / "hw1_deconv.py").write_bytes(solution_path("hw1_deconv").read_bytes())
    public = grade("hw1_deconv", folder / "hw1_deconv.py", folder / "hw1_deconv_references.npz", verbose=False)
    assert public.summary() == "hw1_deconv: unpool 2/2, deconv_step 3/3 -> 5/5"
    # The instructor's grader, run in the unpacked folder, ignores the file beside the submission
    # and runs every check, hidden ones included, from the course's data.
    full = grade("hw1_deconv", folder / "hw1_deconv.py", verbose=False)
    assert full.references == str(REFERENCE_DIR / "hw1_deconv.npz")
    assert full.summary() == "hw1_deconv: unpool 3/3, deconv_step 4/4 -> 7/7"
    tests = load_module(folder / "test_hw1_deconv.py", "handout_tests")
    assert [check.id for check in tests.CHECKS] == [check.id for check in data.checks]
    tests.test_check(tests.CHECKS[0])
    (folder / "hw1_deconv.py").write_bytes((HOMEWORK_DIR / "hw1_deconv" / "hw1_deconv.py").read_bytes())
    with pytest.raises(AssertionError, match="not implemented: unpool"):
        tests.test_check(tests.CHECKS[0])


@pytest.mark.slow
def test_generated_notebook_runs_with_a_complete_answer(tmp_path):
    """The student notebook, executed with the solution in place of the stubs, ends with full marks."""
    import nbformat
    from nbclient import NotebookClient

    write_student_versions(tmp_path, ["hw4_receptive_field"])
    folder = tmp_path / "hw4_receptive_field"
    (folder / "hw4_receptive_field.py").write_bytes(solution_path("hw4_receptive_field").read_bytes())
    notebook = nbformat.read(folder / "hw4_receptive_field.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    last = "".join(output.get("text", "") for output in notebook.cells[-1].outputs)
    assert last.splitlines()[-1] == "hw4_receptive_field: receptive_field 4/4, unit_box 4/4 -> 8/8"


@pytest.mark.parametrize(
    "assignment, mistake",
    [(assignment, mistake) for assignment, mistakes in MISTAKES.items() for mistake in mistakes],
    ids=lambda value: value if isinstance(value, str) else value.title.replace(" ", "_"),
)
def test_every_common_mistake_is_named_with_its_advice(assignment, mistake, monkeypatch):
    """At least one of the assignment's checks recognises the mistake and says what to change."""
    module = solution_module(assignment)
    monkeypatch.setattr(module, mistake.function, mistake.make(module))
    results = [
        run_check(check, module) for check in load_references(assignment, REFERENCE_DIR / f"{assignment}.npz").checks
    ]
    named = [r for r in results if r.message == f"{mistake.title}: {mistake.advice}"]
    assert named, [r.message for r in results if not r.passed]
    assert all(not r.passed for r in named)


def test_every_assignment_has_at_least_three_common_mistakes():
    assert set(MISTAKES) == set(ASSIGNMENTS)
    assert all(len(mistakes) >= 3 for mistakes in MISTAKES.values())


@pytest.mark.slow
def test_the_gradescope_autograder_zip_grades_a_correct_and_a_wrong_submission(tmp_path):
    """The zip's own run_autograder, in a Gradescope-like folder (AUTOGRADER_ROOT), writes
    results.json: full marks for the solution, the named mistake and 0 for a wrong answer, and a
    message for a missing file."""
    import os
    import stat

    from course_utils.homework.gradescope import make_gradescope_zip

    archive = make_gradescope_zip("hw4_receptive_field", tmp_path / "out")
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        assert {"setup.sh", "run_autograder", "hw4_receptive_field.npz", "course_utils/homework/grader.py"} <= set(
            names
        )
        assert "course_utils/homework/solutions/hw4_receptive_field.py" in names  # the package, as installed
        bundle.extractall(tmp_path / "root" / "source")
    root = tmp_path / "root"
    script = root / "source" / "run_autograder"
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    # python3 on the PATH is the one with the package installed, as setup.sh leaves Gradescope's image
    environment = dict(
        os.environ, AUTOGRADER_ROOT=str(root), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )

    def run(source: str | None) -> dict:
        submission = root / "submission"
        shutil.rmtree(submission, ignore_errors=True)
        submission.mkdir()
        if source is not None:
            (submission / "hw4_receptive_field.py").write_text(source)
        subprocess.run([str(script)], env=environment, check=True, capture_output=True, timeout=300)
        return json.loads((root / "results" / "results.json").read_text())

    correct = run(solution_path("hw4_receptive_field").read_text())
    assert all(test["score"] == test["max_score"] for test in correct["tests"]) and len(correct["tests"]) == 7
    assert {test["visibility"] for test in correct["tests"]} == {"visible", "after_published"}
    wrong = run(
        solution_path("hw4_receptive_field").read_text()
        + textwrap.dedent(inspect.getsource(receptive_field_without_padding)).replace(
            "def receptive_field_without_padding(", "def receptive_field("
        )
    )
    failed = [test for test in wrong["tests"] if test["score"] == 0]
    assert failed and all(test["output"].startswith("padding ignored: ") for test in failed)
    missing = run(None)
    assert missing["score"] == 0 and "upload the file hw4_receptive_field.py" in missing["output"]
