"""The package's input contract, case by case: bad input is refused with a clear error that names
the argument (never a raw torch trace, never a silently wrong result), and a model the tools
cannot follow is refused rather than analysed wrongly. The grader's cases run real malicious
submissions in its sandbox."""

from __future__ import annotations

import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import widgets
from course_utils.activations import TopK, mine_top_activations
from course_utils.correspondence import correspondence_delta, correspondence_table, mask_square
from course_utils.deconvnet import project, project_activation
from course_utils.homework import REFERENCE_DIR, grade, grader
from course_utils.homework.generate import solution_path
from course_utils.invariance import invariance_curves, transform_images
from course_utils.layers import layer_outputs
from course_utils.models import NamedSequential, ZFNet
from course_utils.occlusion import occlusion_map
from tests.conftest import colour_dataset, hook_count

SELECTION = torch.tensor([[0, 1, 2, 2]])


@pytest.fixture(scope="module")
def model() -> ZFNet:
    torch.manual_seed(0)
    return ZFNet(image_size=32, conv_widths=(4, 6, 8, 8, 6), fc_widths=(16, 16), num_classes=3).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def nan_images(images: torch.Tensor) -> torch.Tensor:
    bad = images.clone()
    bad[:, 0, 3, 3] = float("nan")
    return bad


# --------------------------------------------------------------------------------------------
# Images: NaN/inf values, dtype, size, device
# --------------------------------------------------------------------------------------------

ENTRY_POINTS = {
    "project": lambda m, x: project(m, x, "conv2", SELECTION),
    "project_activation": lambda m, x: project_activation(m, x[:1], "conv2", 1),
    "mine_top_activations": lambda m, x: mine_top_activations(m, x, "conv2", k=1, progress=False),
    "occlusion_map": lambda m, x: occlusion_map(m, x[0], 8, 8, layer=None),
    "invariance_curves": lambda m, x: invariance_curves(m, x, "rotate", [0, 10]),
    "correspondence_delta": lambda m, x: correspondence_delta(m, x, torch.full((2, 2), 8.0), 5),
    "layer_outputs": lambda m, x: layer_outputs(m, x, ["conv2"]),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_nan_or_inf_pixels_are_refused(model, images, entry):
    for bad in (nan_images(images), images.clone().index_fill_(3, torch.tensor([0]), float("inf"))):
        with pytest.raises(ValueError, match="NaN or infinite"):
            ENTRY_POINTS[entry](model, bad)
    assert hook_count(model) == 0


def test_transform_images_refuses_nan_pixels(images):
    with pytest.raises(ValueError, match="images contain NaN or infinite values"):
        transform_images(nan_images(images), "rotate", 10)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_images_of_another_dtype_than_the_model_are_refused(model, images, entry, dtype):
    with pytest.raises(ValueError, match=rf"images are {dtype} but the model is torch.float32; use images.to"):
        ENTRY_POINTS[entry](model, images.to(dtype))


WRONG_SIZE_CALLS = {  # the model's fc6 expects 32x32 inputs; 40x40 fails inside its forward
    "project": lambda m, x: project(m, x, "fc6", torch.tensor([[0, 1, 0, 0]])),
    "project_activation": lambda m, x: project_activation(m, x[:1], "fc6", 1),
    "mine_top_activations": lambda m, x: mine_top_activations(m, x, "fc6", k=1, progress=False),
    "occlusion_map": lambda m, x: occlusion_map(m, x[0], 8, 8, layer=None),
    "invariance_curves": lambda m, x: invariance_curves(m, x, "rotate", [0]),
    "correspondence_delta": lambda m, x: correspondence_delta(m, x, torch.full((2, 2), 8.0), 5),
    "layer_outputs": lambda m, x: layer_outputs(m, x, ["fc6"]),
}


@pytest.mark.parametrize("entry", WRONG_SIZE_CALLS)
def test_images_the_model_cannot_take_name_the_layer(model, entry):
    with pytest.raises(ValueError, match=r"layer 'fc6' failed on its input of shape"):
        WRONG_SIZE_CALLS[entry](model, torch.randn(2, 3, 40, 40))
    assert hook_count(model) == 0


def test_meta_images_and_meta_models_are_refused(model, images):
    with pytest.raises(ValueError, match="meta device"):
        project(model, images.to("meta"), "conv2", SELECTION)
    with torch.device("meta"):
        empty = ZFNet(image_size=32, conv_widths=(4, 6, 8, 8, 6), fc_widths=(16, 16), num_classes=3).eval()
    with pytest.raises(ValueError, match="meta device"):
        layer_outputs(empty, images.to("meta"), ["conv2"])


def test_images_on_another_device_name_the_fix(model, images):
    with pytest.raises(ValueError, match=r"images are on meta but the model is on cpu|meta device"):
        occlusion_map(model, images[0].to("meta"), 8, 8)


# --------------------------------------------------------------------------------------------
# Fills: NaN/inf, uint8, wrong length
# --------------------------------------------------------------------------------------------

FILL_ENTRY_POINTS = {
    "occlusion_map": lambda m, x, fill: occlusion_map(m, x[0], 8, 8, layer=None, fill=fill),
    "transform_images": lambda m, x, fill: transform_images(x, "rotate", 30, fill),
    "invariance_curves": lambda m, x, fill: invariance_curves(m, x, "rotate", [0, 30], fill=fill),
    "mask_square": lambda m, x, fill: mask_square(x[0], (8, 8), 5, fill),
    "correspondence_delta": lambda m, x, fill: correspondence_delta(m, x, torch.full((2, 2), 8.0), 5, fill=fill),
}


@pytest.mark.parametrize("entry", FILL_ENTRY_POINTS)
@pytest.mark.parametrize(
    "fill, message",
    [
        (float("nan"), "fill must be finite"),
        (float("inf"), "fill must be finite"),
        (torch.tensor([0, 0, 0], dtype=torch.uint8), "fill must be float values in normalized units"),
        ("grey", "fill must be a float"),
        (True, "fill must be a float"),
    ],
    ids=["nan", "inf", "uint8", "string", "bool"],
)
def test_bad_fills_are_refused(model, images, entry, fill, message):
    with pytest.raises(ValueError, match=message):
        FILL_ENTRY_POINTS[entry](model, images, fill)


def test_per_channel_fills_must_have_three_values(model, images):
    with pytest.raises(ValueError, match="fill must be a float or 3 per-channel values, got 2 values"):
        occlusion_map(model, images[0], 8, 8, fill=[0.0, 0.0])


# --------------------------------------------------------------------------------------------
# Integers: channels, classes, sizes, batch sizes (never truncated)
# --------------------------------------------------------------------------------------------

INTEGER_CASES = {
    "project channel 1.5": (
        lambda m, x: project(m, x, "conv2", torch.tensor([[0.0, 1.5, 2.0, 2.0]])),
        "selections must be integers",
    ),
    "project batch_size 0": (
        lambda m, x: project(m, x, "conv2", SELECTION, batch_size=0),
        "batch_size must be a positive integer",
    ),
    "project batch_size -1": (
        lambda m, x: project(m, x, "conv2", SELECTION, batch_size=-1),
        "batch_size must be a positive integer",
    ),
    "project_activation channel 1.5": (
        lambda m, x: project_activation(m, x[:1], "conv2", 1.5),
        "channel must be an integer",
    ),
    "project_activation location 2.5": (
        lambda m, x: project_activation(m, x[:1], "conv2", 1, (2.5, 1)),
        "location y must be an integer",
    ),
    "mine k 2.5": (
        lambda m, x: mine_top_activations(m, x, "conv2", k=2.5, progress=False),
        "k must be a positive integer",
    ),
    "mine batch_size 0": (
        lambda m, x: mine_top_activations(m, x, "conv2", k=1, batch_size=0, progress=False),
        "batch_size must be a positive integer",
    ),
    "occlusion window 8.0": (lambda m, x: occlusion_map(m, x[0], 8.0, 8), "window must be a positive integer"),
    "occlusion stride True": (lambda m, x: occlusion_map(m, x[0], 8, True), "stride must be a positive integer"),
    "occlusion target 1.5": (lambda m, x: occlusion_map(m, x[0], 8, 8, target=1.5), "target must be an integer index"),
    "occlusion target 3": (lambda m, x: occlusion_map(m, x[0], 8, 8, target=3), "target 3 is out of range"),
    "occlusion channel 2.0": (
        lambda m, x: occlusion_map(m, x[0], 8, 8, layer="conv2", channel=2.0),
        "channel must be an integer index",
    ),
    "occlusion batch_size 0": (
        lambda m, x: occlusion_map(m, x[0], 8, 8, batch_size=0),
        "batch_size must be a positive integer",
    ),
    "invariance target 1.5": (
        lambda m, x: invariance_curves(m, x, "rotate", [0], target=[1.5, 0.0]),
        "target must be integer class indices",
    ),
    "invariance batch_size 0": (
        lambda m, x: invariance_curves(m, x, "rotate", [0], batch_size=0),
        "batch_size must be a positive integer",
    ),
    "mask_square window 2.5": (lambda m, x: mask_square(x[0], (8, 8), 2.5), "window must be a positive integer"),
    "correspondence window 3.5": (
        lambda m, x: correspondence_delta(m, x, torch.full((2, 2), 8.0), torch.tensor([3.5, 3.5])),
        "window must be integers",
    ),
    "TopK channels 0.5": (
        lambda m, x: TopK(
            "conv2", torch.ones(6, 1), torch.zeros(6, 1, dtype=torch.long), torch.zeros(6, 1, 2, dtype=torch.long)
        ).selections([0.5]),
        "channels must be integers",
    ),
}


@pytest.mark.parametrize("case", INTEGER_CASES)
def test_non_integers_and_non_positive_counts_are_refused(model, images, case):
    call, message = INTEGER_CASES[case]
    with pytest.raises(ValueError, match=message):
        call(model, images)
    assert hook_count(model) == 0


def test_correspondence_table_counts_are_integers(model):
    faces = colour_dataset(4, size=32)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        correspondence_table(model, faces, draws=0)
    with pytest.raises(ValueError, match="num_images must be a positive integer"):
        correspondence_table(model, faces, num_images=2.5)


def test_explorer_window_must_be_an_integer(model):
    data = colour_dataset(4, size=32)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        widgets.occlusion_explorer(model, data, window=4.5)


# --------------------------------------------------------------------------------------------
# Models the tools cannot follow
# --------------------------------------------------------------------------------------------


def small_net(**replace: nn.Module) -> NamedSequential:
    torch.manual_seed(2)
    layers = OrderedDict(
        [
            ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(4, 4, 3, padding=1)),
            ("flatten", nn.Flatten()),
            ("fc8", nn.Linear(4 * 8 * 8, 3)),
        ]
    )
    layers.update(replace)
    return NamedSequential(layers).eval()


def test_a_submodule_in_training_mode_is_refused_everywhere(images):
    net = small_net()
    net.pool1.train()
    x = images[:, :, :16, :16].contiguous()
    for call in (
        lambda: project(net, x, "conv2", SELECTION),
        lambda: occlusion_map(net, x[0], 4, 4, layer=None),
        lambda: invariance_curves(net, x, "rotate", [0]),
        lambda: mine_top_activations(net, x, "conv2", k=1, progress=False),
    ):
        with pytest.raises(ValueError, match=r"submodule 'pool1' \(MaxPool2d\) of the model is in training mode"):
            call()


class LeakyReLU(nn.ReLU):
    def forward(self, x):
        return F.leaky_relu(x, 0.1)


class ScaledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


class AvgPoolPretendingToBeMax(nn.MaxPool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride)


@pytest.mark.parametrize(
    "layer, module",
    [("relu1", LeakyReLU()), ("conv1", ScaledConv(3, 4, 3, padding=1)), ("pool1", AvgPoolPretendingToBeMax(2))],
    ids=["ReLU subclass", "Conv2d subclass", "MaxPool2d subclass"],
)
def test_standard_layers_with_their_own_forward_are_refused(images, layer, module):
    net = small_net(**{layer: module})
    x = images[:, :, :16, :16].contiguous()
    message = rf"layer '{layer}' is a {type(module).__name__}, a subclass of nn\.\w+ with its own forward"
    with pytest.raises(ValueError, match=message):
        project(net, x, "conv2", SELECTION)
    with pytest.raises(ValueError, match=message):
        occlusion_map(net, x[0], 4, 4, layer=None)
    layer_outputs(net, x, ["conv2"])  # only observing the outputs is fine


def test_forward_hooks_of_other_code_are_refused(images):
    net = small_net()
    x = images[:, :, :16, :16].contiguous()
    handle = net.relu1.register_forward_hook(lambda module, args, output: output * 0)
    try:
        with pytest.raises(ValueError, match="layer 'relu1' has a forward hook or pre-hook registered by other code"):
            project(net, x, "conv2", SELECTION)
    finally:
        handle.remove()
    pre = net.conv2.register_forward_pre_hook(lambda module, args: (args[0] + 1,))
    try:
        with pytest.raises(ValueError, match="layer 'conv2' has a forward hook or pre-hook"):
            occlusion_map(net, x[0], 4, 4, layer=None)
    finally:
        pre.remove()
    assert hook_count(net) == 0


class InPlaceFunctionalReLU(NamedSequential):
    def forward(self, x):
        for name, module in self.named_children():
            x = module(x)
            if name == "conv1":
                F.relu(x, inplace=True)  # changes conv1's output behind the hooks' back
        return x


def test_inference_mode_is_refused_and_in_place_changes_are_caught_outside_it(images):
    net = InPlaceFunctionalReLU(OrderedDict(small_net().named_children())).eval()
    x = images[:, :, :16, :16].contiguous()
    with torch.inference_mode():
        with pytest.raises(ValueError, match="torch.inference_mode"):
            project(net, x, "conv2", SELECTION)
    with pytest.raises(ValueError, match="layer 'relu1' does not receive the unchanged output of 'conv1'"):
        project(net, x, "conv2", SELECTION)


def test_occlusion_refuses_a_forward_that_is_not_the_plain_sequence(images):
    class Skip(NamedSequential):
        def forward(self, x):
            return super().forward(x + 1)

    net = Skip(OrderedDict(small_net().named_children())).eval()
    with pytest.raises(ValueError, match="does not receive the unchanged output of 'the input'"):
        occlusion_map(net, images[0, :, :16, :16].contiguous(), 4, 4, layer=None)


def test_project_never_changes_the_model_batch_norm_statistics_included(images):
    layers = list(small_net().named_children())
    net = NamedSequential(OrderedDict([layers[0], ("bn1", nn.BatchNorm2d(4)), *layers[1:]])).eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-1, 1)
        net.bn1.running_var.uniform_(0.5, 2)
    before = {name: value.clone() for name, value in net.state_dict().items()}
    project(net, images[:, :, :16, :16].contiguous(), "conv2", SELECTION)
    occlusion_map(net, images[0, :, :16, :16].contiguous(), 4, 4, layer="conv2")
    after = net.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(module.training for module in net.modules())


# --------------------------------------------------------------------------------------------
# The grader: real malicious submissions, run in its sandbox
# --------------------------------------------------------------------------------------------

GOOD = solution_path("hw4_receptive_field").read_text()


def spoiling(body: str) -> str:
    """The solution with ``unit_box`` replaced by ``body`` (which defines it): ``receptive_field``
    stays correct, so its checks show that nothing the spoiled function did reached the grader."""
    return GOOD + "\n\n" + textwrap.dedent(body)


SUBMISSIONS = {
    "exits at import": ("import sys\nsys.exit(3)\n", "could not import submission.py: SystemExit: 3"),
    "hard exit at import": ("import os\nos._exit(0)\n", "the grading process ended (exit code 0)"),
    "infinite loop at import": ("while True:\n    pass\n", "importing submission.py did not finish within 8 s"),
    "infinite loop in a check": (
        spoiling("""
            def unit_box(*args, **kwargs):
                while True:
                    pass
        """),
        "did not finish within 3 s (the per-check time limit)",
    ),
    "KeyboardInterrupt": (
        spoiling("""
            def unit_box(*args, **kwargs):
                raise KeyboardInterrupt("ctrl-c")
        """),
        "KeyboardInterrupt: ctrl-c",
    ),
    "exit in a check": (
        spoiling("""
            def unit_box(*args, **kwargs):
                raise SystemExit(0)
        """),
        "SystemExit: 0",
    ),
    "hard exit in a check": (
        spoiling("""
            def unit_box(*args, **kwargs):
                import os
                os._exit(0)
        """),
        "the grading process ended (exit code 0)",
    ),
    "unconvertible return": (
        spoiling("""
            class Anything:
                def __eq__(self, other):
                    return True

            def unit_box(*args, **kwargs):
                return Anything()
        """),
        "returned Anything, which is not a tensor or a number",
    ),
    "array that raises": (
        spoiling("""
            class Evil:
                def __array__(self, *args, **kwargs):
                    raise RuntimeError("no")

            def unit_box(*args, **kwargs):
                return Evil()
        """),
        "returned an object that cannot be read as an array",
    ),
    "patches the grader": (
        spoiling("""
            import numpy as np
            import course_utils.homework.grader as grader
            grader.rel_error = lambda a, b: 0.0
            grader.judge = lambda check, result, mutated=None: grader.CheckResult(check, "pass")
            np.testing = None

            def unit_box(*args, **kwargs):
                return (0, 0, 1, 1)
        """),
        "relative error",
    ),
}


@pytest.mark.parametrize("case", SUBMISSIONS)
def test_malicious_submissions_score_zero_for_the_checks_they_spoil(tmp_path, case):
    source, message = SUBMISSIONS[case]
    submission = tmp_path / "submission.py"
    submission.write_text(source)
    report = grade(
        "hw4_receptive_field", submission, verbose=False, check_seconds=3, total_seconds=120, import_seconds=8
    )
    spoiled = [r for r in report.results if r.check.function == "unit_box" or "import" in case]
    assert spoiled and all(not r.passed for r in spoiled)
    assert all(message in r.message for r in spoiled), [r.message for r in spoiled]
    if "import" not in case:  # the other exercise still scores: nothing the submission did reached the grader
        assert all(r.passed for r in report.results if r.check.function == "receptive_field")


def test_a_forged_reference_file_beside_the_submission_is_ignored(tmp_path):
    submission = tmp_path / "hw4_receptive_field.py"
    submission.write_text(
        GOOD.replace("def receptive_field(", "def _real(") + "\ndef receptive_field(layers):\n    return (0, 0, 0)\n"
    )
    forged = tmp_path / "hw4_receptive_field_references.npz"
    forged.write_bytes(b"forged")
    report = grade("hw4_receptive_field", submission, verbose=False)
    assert report.references == str(REFERENCE_DIR / "hw4_receptive_field.npz")
    assert report.earned < report.possible


def test_the_total_time_limit_stops_a_slow_submission(tmp_path):
    submission = tmp_path / "slow.py"
    submission.write_text(
        GOOD + "\nimport time\ndef unit_box(*args, **kwargs):\n    time.sleep(2)\n    return (0, 0, 1, 1)\n"
    )
    report = grade("hw4_receptive_field", submission, verbose=False, check_seconds=30, total_seconds=6)
    messages = [r.message for r in report.results if r.check.function == "unit_box"]
    assert any("the total time limit of 6 s was reached" in message for message in messages), messages
    assert all(r.passed for r in report.results if r.check.function == "receptive_field")


def test_the_time_limits_do_not_count_the_grading_process_start(tmp_path):
    # Starting Python and importing torch takes seconds (more on a busy machine); a 2-s total
    # that counted it would stop every check of a submission whose own code takes milliseconds.
    submission = tmp_path / "fast.py"
    submission.write_text(GOOD)
    report = grade("hw4_receptive_field", submission, verbose=False, total_seconds=2, import_seconds=2)
    assert report.results and all(r.passed for r in report.results), [r.message for r in report.results]


def test_a_grading_process_that_cannot_start_says_so_instead_of_blaming_the_submission(tmp_path, monkeypatch):
    broken = tmp_path / "site"
    broken.mkdir()
    (broken / "torch.py").write_text("raise ImportError('a broken torch')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken))
    submission = tmp_path / "submission.py"
    submission.write_text(GOOD)
    report = grade("hw4_receptive_field", submission, verbose=False)
    assert report.results and all(not r.passed for r in report.results)
    assert all(
        "the grading process failed before importing the submission (exit code 1)" in r.message for r in report.results
    ), [r.message for r in report.results]


def test_a_grading_process_that_starts_too_slowly_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(grader, "STARTUP_SECONDS", 0.0)
    submission = tmp_path / "submission.py"
    submission.write_text(GOOD)
    report = grade("hw4_receptive_field", submission, verbose=False)
    assert report.results and all(not r.passed for r in report.results)
    assert all("the grading process did not start within 0 s" in r.message for r in report.results)


def test_grade_command_exits_zero_only_when_every_check_ran_and_passed(tmp_path):
    from course_utils.homework.__main__ import main

    assert main(["grade", "hw4_receptive_field", "--solution"]) == 0
    submission = tmp_path / "submission.py"
    submission.write_text("import sys\nsys.exit(0)\n")
    assert main(["grade", "hw4_receptive_field", "--module", str(submission)]) == 1


def test_student_code_runs_in_a_temporary_folder(tmp_path):
    submission = tmp_path / "submission.py"
    submission.write_text(
        GOOD + "\nimport os\nWHERE = os.getcwd()\nopen('written-by-the-submission.txt', 'w').write('x')\n"
    )
    grade("hw4_receptive_field", submission, verbose=False)
    assert not (tmp_path / "written-by-the-submission.txt").exists()
    assert not (Path.cwd() / "written-by-the-submission.txt").exists()


# --------------------------------------------------------------------------------------------
# Training that cannot silently fail
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--max-train", "0"], "--max-train must be a positive number of images, got 0"),
        (["--epochs", "3", "--snapshots", "1,5"], r"snapshot epochs \[5\] are not points of this run: .*\(0, 3\]"),
        (["--epochs", "3", "--snapshots", "0,1"], r"snapshot epochs \[0\] are not points of this run"),
        (["--snapshots", "1,two"], "--snapshots must be comma-separated epochs such as 0.25,1,2"),
        (["--lr", "nan"], "lr must be a finite number, got nan"),
        (["--lr", "0"], "lr must be > 0, got 0.0"),
        (["--lr", "-0.1"], "lr must be > 0"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--dropout", "1.5"], r"--dropout must be in \[0, 1\)"),
        (["--conv1", "7x2"], "--conv1 .* must be comma-separated integers"),
        (["--fc-widths", "8"], "--fc-widths needs 2 integers, got 1"),
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
    ],
)
def test_training_arguments_are_checked_before_any_data_loads(monkeypatch, capsys, arguments, message):
    from course_utils import train as train_module

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the arguments were checked")

    monkeypatch.setattr(train_module, "load_dataset", no_data)
    with pytest.raises(SystemExit) as exited:
        train_module.main(arguments)
    assert exited.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_training_out_that_is_a_file_is_refused(tmp_path, capsys):
    from course_utils import train as train_module

    not_a_folder = tmp_path / "model.pt"
    not_a_folder.write_text("x")
    with pytest.raises(SystemExit) as exited:
        train_module.main(["--out", str(not_a_folder)])
    assert exited.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_a_diverging_run_stops_with_a_clear_error_and_writes_no_checkpoint(tmp_path, colour_data):
    from course_utils.train import TrainConfig, TrainingDiverged, train

    train_set, val_set = colour_data
    config = TrainConfig(
        epochs=2, batch_size=16, lr=1e8, max_filter_rms=None, out_dir=str(tmp_path / "run"), snapshot_epochs=(1,)
    )
    with pytest.raises(
        TrainingDiverged, match=r"the training loss became (nan|inf) at epoch 1, step \d+.*Lower the learning rate"
    ):
        train(config, train_set, val_set, progress=False)
    assert not list((tmp_path / "run").glob("*.pt")) if (tmp_path / "run").exists() else True


def test_the_training_command_exits_1_when_the_run_diverges(tmp_path, capsys, monkeypatch):
    from course_utils import train as train_module

    data = colour_dataset(64, size=32)
    monkeypatch.setattr(train_module, "load_dataset", lambda *args, **kwargs: data)
    with pytest.raises(SystemExit) as exited:
        train_module.main(["--epochs", "1", "--batch-size", "16", "--lr", "1e8", "--out", str(tmp_path / "run")])
    assert exited.value.code == 1
    assert "error: the training loss became" in capsys.readouterr().err
    assert not (tmp_path / "run" / "final.pt").exists()


def test_train_and_val_with_different_classes_name_both_lists(colour_data):
    from course_utils.train import TrainConfig, train

    train_set, val_set = colour_data
    other = colour_dataset(32, size=32, classes=2)
    with pytest.raises(
        ValueError, match=r"different classes: train \['class0', 'class1', 'class2'\], val \['class0', 'class1'\]"
    ):
        train(TrainConfig(epochs=1, batch_size=16), train_set, other, progress=False)


def write_photo_folder(root: Path, classes=("cat", "dog"), per_class: int = 10) -> None:
    from PIL import Image

    for number, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            Image.new("RGB", (20, 20), (40 * number + index, 80, 120)).save(root / name / f"{index}.png")


def test_a_photo_folder_without_validation_split_is_held_out_not_validated_on_its_training_images(
    tmp_path, monkeypatch, capsys
):
    from course_utils import train as train_module

    write_photo_folder(tmp_path / "photos")
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    seen = {}

    def fake_train(config, train_set, val_set, model_config=None, progress=True):
        seen.update(
            train=len(train_set),
            val=len(val_set),
            overlap=bool(
                set(train_set.images.flatten(1).sum(1).tolist()) & set(val_set.images.flatten(1).sum(1).tolist())
            ),
        )
        return None, [{"val_acc": 0.5}]

    monkeypatch.setattr(train_module, "train", fake_train)
    train_module.main(["--dataset", str(tmp_path / "photos"), "--epochs", "1", "--out", str(tmp_path / "run")])
    assert (seen["train"], seen["val"]) == (18, 2) and not seen["overlap"]
    out = capsys.readouterr().out
    assert "has no train/ and val/ folders: holding out 2 of its 20 images" in out
    assert f"saved to {tmp_path / 'run'}: final.pt, history.json" in out
    assert list((tmp_path / "cache").glob("image-folder-*.npz"))  # COURSE_CACHE_DIR is honoured


def test_a_truncated_image_names_the_file(tmp_path):
    from course_utils.data import load_image_folder

    write_photo_folder(tmp_path / "photos", per_class=2)
    broken = tmp_path / "photos" / "dog" / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(ValueError, match=rf"cannot read the image {broken}"):
        load_image_folder(tmp_path / "photos", image_size=16, progress=False, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------------------------
# Files you can trust: checkpoints and caches
# --------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    from course_utils.models import ZFNetConfig, save_checkpoint

    torch.manual_seed(0)
    model = ZFNet(ZFNetConfig(num_classes=3, image_size=32, conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8)))
    return save_checkpoint(tmp_path / "model.pt", model, epoch=1, class_names=["a", "b", "c"])


def rewrite_checkpoint(path: Path, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_a_flipped_bit_in_a_checkpoints_weights_is_an_error(checkpoint):
    from course_utils.models import CheckpointError, load_checkpoint

    load_checkpoint(checkpoint)
    rewrite_checkpoint(checkpoint, lambda p: p["state_dict"]["conv1.weight"].view(-1).view(torch.int32).__ixor__(1))
    with pytest.raises(CheckpointError, match="do not match their recorded SHA-256"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("state_dict"), "is malformed: it has no state_dict"),
        (lambda p: p.pop("config"), "is malformed: it has no config"),
        (
            lambda p: p["config"].update(colour_jitter=True),
            r"config keys this version does not know: \['colour_jitter'\]",
        ),
        (
            lambda p: (p["config"].update(fc_widths=[16, 8]), p.pop("sha256")),
            "the weights do not fit the recorded architecture",
        ),
        (
            lambda p: (p["state_dict"].pop("fc8.bias"), p.pop("sha256")),
            "the weights do not fit the recorded architecture.*fc8.bias",
        ),
    ],
    ids=["no weights", "no config", "unknown config key", "config and weights disagree", "missing weight"],
)
def test_malformed_checkpoints_raise_checkpoint_error_with_the_reason(checkpoint, change, message):
    from course_utils.models import CheckpointError, load_checkpoint

    rewrite_checkpoint(checkpoint, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint)


def test_metadata_that_cannot_be_loaded_back_is_refused_at_save_time(tmp_path):
    from course_utils.models import CheckpointError, ZFNetConfig, save_checkpoint

    model = ZFNet(ZFNetConfig(num_classes=3, image_size=32, conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8)))
    with pytest.raises(CheckpointError, match="could not be loaded back safely"):
        save_checkpoint(tmp_path / "model.pt", model, callback=lambda: None)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("sidecar", [b"[1, 2, 3]", b'"text"', b"42", b"\xff\xfe\x00garbage", b"{not json"])
def test_a_malformed_cache_sidecar_triggers_a_rebuild(tmp_path, sidecar):
    from course_utils.data import load_embedded

    first = load_embedded("val", root=tmp_path, num_images=8, progress=False)
    (json_file,) = tmp_path.glob("*.json")
    json_file.write_bytes(sidecar)
    with pytest.warns(RuntimeWarning, match="corrupt.*regenerating it"):
        again = load_embedded("val", root=tmp_path, num_images=8, progress=False)
    assert torch.equal(first.images, again.images)


def test_course_cache_dir_is_honoured_and_a_read_only_cache_serves_from_memory(tmp_path, monkeypatch):
    import os

    from course_utils.data import load_embedded

    cache = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE_DIR", str(cache))
    load_embedded("val", num_images=8, progress=False)
    assert len(list(cache.glob("embedded-*.npz"))) == 1
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(locked))
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.warns(RuntimeWarning, match="cannot write the cache .* served from memory"):
            data = load_embedded("val", num_images=8, progress=False)
        assert len(data) == 8 and not list(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_a_read_only_cache_folder_serves_from_memory_even_as_root(tmp_path, monkeypatch):
    from course_utils.data import core, load_embedded

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(core.tempfile, "mkstemp", refuse)
    with pytest.warns(RuntimeWarning, match="cannot write the cache .* served from memory"):
        data = load_embedded("val", root=tmp_path, num_images=8, progress=False)
    assert len(data) == 8 and not list(tmp_path.glob("*.npz"))


def test_orphaned_temporary_files_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    import os
    import subprocess
    import sys

    from course_utils.data.core import atomic_write

    target = tmp_path / "cache.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".cache.npz.{int(dead.stdout)}.abc123.tmp"
    orphan.write_bytes(b"half written")
    live = tmp_path / f".cache.npz.{os.getpid()}.live.tmp"  # a writer that is still running
    live.write_bytes(b"in progress")
    with atomic_write(target) as stream:
        stream.write(b"data")
    assert target.read_bytes() == b"data" and not orphan.exists() and live.exists()
