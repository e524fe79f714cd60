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
from course_utils.homework import REFERENCE_DIR, grade
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
