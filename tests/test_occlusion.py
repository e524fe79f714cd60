"""Occlusion maps (course_utils.occlusion) against independent computations.

References, all written in this file: an explicit loop that pastes the grey square into the
image and runs the model on each occluded image; Captum's ``Occlusion``; small cases worked
out by hand.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_utils.layers import layer_names, layer_outputs
from course_utils.models import NamedSequential, ZFNet, ZFNetConfig
from course_utils.occlusion import (
    OcclusionResult,
    occluder_coverage,
    occluder_positions,
    occlusion_map,
    occlusion_probability_drop,
    occlusion_to_pixels,
)

ATOL = 1e-5


def small_zfnet(seed: int = 0, **overrides) -> ZFNet:
    torch.manual_seed(seed)
    config = ZFNetConfig(conv_widths=(8, 16, 16, 16, 8), fc_widths=(32, 32), num_classes=5, **overrides)
    return ZFNet(config).eval()


def torchvision_style_net(seed: int = 0) -> NamedSequential:
    """In-place ReLUs, an unpadded pool, a dilated conv, batch norm, a padded pool of values of
    both signs with no ReLU after it (so its -inf padding matters) and an adaptive pool."""
    torch.manual_seed(seed)
    model = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 8, 5, stride=2, padding=1)),
                ("relu1", nn.ReLU(inplace=True)),
                ("pool1", nn.MaxPool2d(3, 2)),
                ("conv2", nn.Conv2d(8, 12, 3, padding=2, dilation=2)),
                ("norm2", nn.BatchNorm2d(12)),
                ("pool2", nn.MaxPool2d(3, 1, padding=1)),
                ("conv3", nn.Conv2d(12, 12, 3, padding=1)),
                ("relu3", nn.ReLU(inplace=True)),
                ("avgpool", nn.AdaptiveAvgPool2d(3)),
                ("flatten", nn.Flatten()),
                ("fc8", nn.Linear(108, 4)),
            ]
        )
    )
    with torch.no_grad():
        model.norm2.running_mean.uniform_(-0.5, 0.5)
        model.norm2.running_var.uniform_(0.5, 2.0)
    return model.eval()


def run_until(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Output of ``layer``, running the named children one by one."""
    for name, module in model.named_children():
        x = module(x)
        if name == layer:
            return x
    raise KeyError(layer)


def brute_force(model, image, window, stride, fill, layer, channel):
    """(P (R, C, K), summed channel of layer (R, C)): paste the square in a loop, run all images."""
    height, width = image.shape[-2:]
    rows = range(0, height - window + 1, stride)
    cols = range(0, width - window + 1, stride)
    occluded_images = []
    for top in rows:
        for left in cols:
            occluded = image.clone()
            occluded[:, top : top + window, left : left + window] = torch.as_tensor(fill).view(-1, 1, 1)
            occluded_images.append(occluded)
    captured = []
    hook = dict(model.named_children())[layer].register_forward_hook(
        lambda module, inputs, output: captured.append(output[:, channel].detach().reshape(len(output), -1).sum(dim=1))
    )
    try:
        with torch.no_grad():
            probabilities = torch.cat([model(batch).softmax(dim=1) for batch in torch.stack(occluded_images).split(64)])
    finally:
        hook.remove()
    grid = (len(rows), len(cols))
    return probabilities.view(*grid, -1), torch.cat(captured).view(grid)


def assert_matches_brute_force(model, image, window, stride, fill, layer, batch_size=256):
    result = occlusion_map(model, image, window, stride, fill=fill, target=1, layer=layer, batch_size=batch_size)
    probabilities, sums = brute_force(model, image, window, stride, fill, layer, result.channel)
    assert result.probabilities.shape == probabilities.shape
    torch.testing.assert_close(result.probabilities, probabilities, atol=ATOL, rtol=0)
    torch.testing.assert_close(result.probability, probabilities[..., 1], atol=ATOL, rtol=0)
    scale = max(1.0, float(sums.abs().max()))
    torch.testing.assert_close(result.activation, sums, atol=ATOL * scale, rtol=0)
    assert torch.equal(result.top_class, probabilities.argmax(dim=-1))
    return result


# --------------------------------------------------------------------------------------------
# Equality with the explicit loop
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window, stride", [(8, 2), (12, 4), (5, 3), (9, 7), (64, 1), (1, 9)])
def test_matches_brute_force_on_zfnet(window, stride):
    """Windows touching every border, strides that leave a margin, whole-image and 1-pixel occluders."""
    model = small_zfnet()
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert_matches_brute_force(model, image, window, stride, 0.0, "conv5")


@pytest.mark.parametrize("layer", ["conv1", "pool1", "relu2", "pool2", "conv4", "pool5", "fc7"])
def test_activation_of_every_kind_of_layer(layer):
    model = small_zfnet(seed=2)
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert_matches_brute_force(model, image, 10, 6, torch.tensor([0.3, -0.8, 1.2]), layer)


@pytest.mark.parametrize("overrides", [{"lcn": True}, {"conv1_kernel": 11, "conv1_stride": 4}, {"image_size": 40}])
def test_matches_brute_force_on_variants(overrides):
    """Contrast normalization, AlexNet's first layer, an image size with odd map sizes."""
    model = small_zfnet(seed=3, **overrides)
    size = model.config.image_size
    image = torch.randn(3, size, size, generator=torch.Generator().manual_seed(3))
    assert_matches_brute_force(model, image, 7, 5, -0.5, "relu3")


def test_matches_brute_force_on_torchvision_style_layers():
    model = torchvision_style_net()
    image = torch.randn(3, 64, 58, generator=torch.Generator().manual_seed(4))
    assert_matches_brute_force(model, image, 6, 2, 0.0, "conv3")


def test_the_brute_force_cases_exercise_every_route():
    """The cases above go through all three ways a layer is recomputed (see _plan)."""
    from course_utils import occlusion

    for model, size in ((small_zfnet(), 64), (torchvision_style_net(), 64)):
        children = list(model.children())
        image = torch.zeros(1, 3, size, size)
        outputs = list(layer_outputs(model, image, layer_names(model)).values())
        rows = occluder_positions(size, 6, 2)
        kinds = {
            (type(step.module).__name__, step.kind)
            for band in (rows[:8], rows[-8:])
            for step in occlusion._plan(
                occlusion._Clean(children, image, outputs, window=6, fill=torch.zeros(3)), band, rows
            )[0]
        }
        assert {("Conv2d", "direct"), ("Conv2d", "delta"), ("MaxPool2d", "direct")} <= kinds, kinds


def test_batch_size_one_gives_the_same_maps():
    model = small_zfnet(seed=5)
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(5))
    tiled = occlusion_map(model, image, 16, 8, target=2, layer="conv5")
    single = occlusion_map(model, image, 16, 8, target=2, layer="conv5", batch_size=1)
    torch.testing.assert_close(single.probabilities, tiled.probabilities, atol=ATOL, rtol=0)
    torch.testing.assert_close(single.activation, tiled.activation, atol=ATOL, rtol=1e-5)
    assert single.channel == tiled.channel


def test_result_metadata_and_defaults():
    model = small_zfnet(seed=6)
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(6))
    result = occlusion_map(model, image, 12, 8, layer="conv5")
    with torch.no_grad():
        clean = model(image[None]).softmax(dim=1)[0]
        conv5 = run_until(model, image[None], "conv5")[0]
    assert result.target == int(clean.argmax())
    assert result.channel == int(conv5.flatten(1).max(dim=1).values.argmax())
    assert result.unoccluded_activation == pytest.approx(float(conv5[result.channel].sum()), rel=1e-6)
    torch.testing.assert_close(result.unoccluded_probabilities, clean)
    assert torch.equal(result.rows, torch.tensor([0, 8, 16, 24, 32, 40, 48]))
    assert torch.equal(result.cols, result.rows)
    assert result.probability.shape == result.top_class.shape == result.activation.shape == (7, 7)
    assert result.image_size == (64, 64) and result.layer == "conv5"
    assert occlusion_map(model, image, 12, 8, layer=None).activation is None


def test_a_model_in_training_mode_is_refused_and_left_unchanged():
    model = small_zfnet(seed=7).train()
    model.drop6.eval()  # a mixed state stays as it was
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(7))
    with pytest.raises(ValueError, match="training mode.*model.eval"):
        occlusion_map(model, image, 16, 16, target=0, layer="conv5")
    assert model.training and not model.drop6.training and model.drop7.training
    model.eval()
    model.drop7.train()
    with pytest.raises(ValueError, match="'drop7'.*training mode"):
        occlusion_map(model, image, 16, 16, target=0, layer="conv5")


def test_activation_map_by_hand():
    """conv1 sums the channels (1x1 kernel of ones): the map is image total - covered + fill."""
    model = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 1, 1, bias=False)),
                ("flatten", nn.Flatten()),
                ("fc8", nn.Linear(36, 2)),
            ]
        )
    ).eval()
    with torch.no_grad():
        model.conv1.weight.fill_(1.0)
    image = torch.arange(3 * 6 * 6, dtype=torch.float32).view(3, 6, 6) / 10
    result = occlusion_map(model, image, 2, 2, fill=torch.tensor([1.0, 2.0, 3.0]), layer="conv1", channel=0)
    total = image.sum()
    for i, top in enumerate((0, 2, 4)):
        for j, left in enumerate((0, 2, 4)):
            covered = image[:, top : top + 2, left : left + 2].sum()
            expected = total - covered + 4 * (1.0 + 2.0 + 3.0)
            assert result.activation[i, j] == pytest.approx(float(expected), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Captum
# --------------------------------------------------------------------------------------------


def test_equals_captum_occlusion_through_the_pixel_mean():
    """Captum: per pixel, mean over covering windows of f(clean) - f(occluded)."""
    captum = pytest.importorskip("captum.attr")
    model = small_zfnet(seed=8)
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(8))
    window, stride, target = 16, 8, 3
    result = occlusion_map(model, image, window, stride, fill=0.25, target=target, layer="conv5")
    with torch.no_grad():
        occlusion = captum.Occlusion(lambda x: model(x).softmax(dim=1))
        attribution = occlusion.attribute(
            image[None],
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=0.25,
            target=target,
            perturbations_per_eval=64,
        )[0]
        ours = result.unoccluded_probabilities[target] - result.to_pixels(result.probability)
        torch.testing.assert_close(attribution, ours.expand(3, -1, -1), atol=ATOL, rtol=0)

        channel = result.channel
        summed = captum.Occlusion(lambda x: run_until(model, x, "conv5")[:, channel].sum(dim=(1, 2)))
        attribution = summed.attribute(
            image[None],
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=0.25,
            perturbations_per_eval=64,
        )[0, 0]
        ours = result.unoccluded_activation - result.to_pixels(result.activation)
        torch.testing.assert_close(attribution, ours, atol=ATOL * float(result.activation.abs().max()), rtol=0)


def test_equals_captum_pointwise_for_non_overlapping_windows():
    """stride == window: each pixel has one window, so P(occluded) = P(clean) - attribution there."""
    captum = pytest.importorskip("captum.attr")
    model = small_zfnet(seed=9)
    image = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(9))
    result = occlusion_map(model, image, 16, 16, target=4, layer=None)
    with torch.no_grad():
        attribution = captum.Occlusion(lambda x: model(x).softmax(dim=1)).attribute(
            image[None],
            sliding_window_shapes=(3, 16, 16),
            strides=(3, 16, 16),
            baselines=0.0,
            target=4,
        )[0, 0]
    from_captum = result.unoccluded_probabilities[4] - attribution[::16, ::16]
    torch.testing.assert_close(result.probability, from_captum, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------
# Grid, pixels, coverage, probability drop
# --------------------------------------------------------------------------------------------


def test_occluder_positions():
    assert occluder_positions(64, 8, 2).tolist() == list(range(0, 57, 2))
    assert occluder_positions(10, 4, 4).tolist() == [0, 4]  # 8 would overrun the image
    assert occluder_positions(5, 5, 3).tolist() == [0]


def test_to_pixels_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    pixels = occlusion_to_pixels(values, window=2, stride=1, image_size=(4, 4))
    assert pixels[0, 0] == 1.0 and pixels[0, 3] == 3.0 and pixels[3, 3] == 9.0
    assert pixels[0, 1] == pytest.approx(1.5) and pixels[1, 0] == pytest.approx(2.5)
    assert pixels[1, 1] == pytest.approx((1 + 2 + 4 + 5) / 4)
    assert pixels[2, 2] == pytest.approx((5 + 6 + 8 + 9) / 4)


def test_to_pixels_marks_uncovered_pixels_nan():
    pixels = occlusion_to_pixels(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), window=2, stride=3, image_size=(6, 7))
    assert pixels.shape == (6, 7)
    assert pixels[0, 0] == 1.0 and pixels[4, 4] == 4.0 and pixels[1, 3] == 2.0
    uncovered = torch.zeros(6, 7, dtype=torch.bool)
    uncovered[2, :] = uncovered[5:, :] = uncovered[:, 2] = uncovered[:, 5:] = True
    assert torch.equal(pixels.isnan(), uncovered)


def test_to_pixels_rejects_a_map_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected a map of shape \(3, 3\)"):
        occlusion_to_pixels(torch.zeros(4, 4), window=2, stride=1, image_size=(4, 4))


def test_occluder_coverage_by_hand():
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:4] = True
    coverage = occluder_coverage(mask, window=2, stride=2)
    assert coverage.tolist() == [[1, 2], [1, 2]]
    with pytest.raises(ValueError, match="bool"):
        occluder_coverage(mask.float(), 2, 2)


def _result_with(probability: torch.Tensor, clean: float, window: int, stride: int, size: int) -> OcclusionResult:
    """An OcclusionResult whose target-class probabilities are ``probability`` (R, C)."""
    rows = occluder_positions(size, window, stride)
    probabilities = torch.stack([probability, 1 - probability], dim=-1)
    return OcclusionResult(
        rows,
        rows.clone(),
        window,
        stride,
        (size, size),
        0,
        probabilities,
        torch.tensor([clean, 1 - clean]),
        None,
        None,
        None,
        None,
    )


def test_probability_drop_by_hand():
    # 8x8 image, object in the top-left 4x4 corner; occluders 4x4 with stride 2 -> 3x3 grid.
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4, :4] = True
    probability = torch.tensor([[0.1, 0.2, 0.6], [0.3, 0.5, 0.7], [0.8, 0.85, 0.9]])
    drop = occlusion_probability_drop(_result_with(probability, 0.9, 4, 2, 8), mask)
    # On the object: (0,0) covers all 16 pixels; (0,1), (1,0) cover 8 = half. (1,1) covers 4 and
    # its centre (4, 4) is background: neither. Background only: (0,2), (1,2), (2,0), (2,1), (2,2).
    assert (drop.num_object, drop.num_background) == (3, 5)
    assert drop.object_drop == pytest.approx(0.9 - (0.1 + 0.2 + 0.3) / 3)
    assert drop.background_drop == pytest.approx(0.9 - (0.6 + 0.7 + 0.8 + 0.85 + 0.9) / 5)


def test_probability_drop_counts_occluders_centred_on_the_object():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 2:6] = True  # 16 pixels: a 2x2 occluder never covers half of them
    probability = torch.arange(49, dtype=torch.float32).view(7, 7) / 100
    drop = occlusion_probability_drop(_result_with(probability, 0.5, 2, 1, 8), mask)
    centres = mask[1:8, 1:8]  # centre pixel of the occluder at (top, left) is (top + 1, left + 1)
    covered = occluder_coverage(mask, 2, 1)
    assert drop.num_object == int(centres.sum())
    assert drop.num_background == int((covered == 0).sum())
    assert drop.object_drop == pytest.approx(float((0.5 - probability[centres]).mean()))
    assert drop.background_drop == pytest.approx(float((0.5 - probability[covered == 0]).mean()))


def test_probability_drop_errors():
    result = _result_with(torch.zeros(3, 3), 0.5, 4, 2, 8)
    with pytest.raises(ValueError, match=r"shape \(8, 8\)"):
        occlusion_probability_drop(result, torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="no object pixel"):
        occlusion_probability_drop(result, torch.zeros(8, 8, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.zeros(1, 3, 64, 64), r"\(3, H, W\).*one image"),
        (torch.zeros(64, 64), r"\(3, H, W\)"),
        (torch.zeros(1, 64, 64), r"grayscale.*expand\(3, -1, -1\)"),
        (torch.zeros(4, 64, 64), "3 channels"),
        (torch.zeros(3, 64, 64, dtype=torch.uint8), "normalize"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        occlusion_map(small_zfnet(), image, 8, 2)


def test_image_must_be_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        occlusion_map(small_zfnet(), [[0.0]], 8, 2)


@pytest.mark.parametrize(
    "window, stride, message",
    [
        (65, 1, "larger than the image.*at most 64"),
        (0, 1, "window must be a positive integer"),
        (8, 0, "stride must be a positive integer"),
        (8, -2, "stride must be a positive integer"),
        (8.0, 2, "window must be a positive integer"),
    ],
)
def test_bad_window_or_stride(window, stride, message):
    with pytest.raises(ValueError, match=message):
        occlusion_map(small_zfnet(), torch.zeros(3, 64, 64), window, stride)


def test_unknown_layer_lists_the_names():
    with pytest.raises(KeyError, match="conv5.*fc7|conv1, relu1"):
        occlusion_map(small_zfnet(), torch.zeros(3, 64, 64), 8, 8, layer="layer5")


def test_channel_and_class_out_of_range():
    model, image = small_zfnet(), torch.zeros(3, 64, 64)
    with pytest.raises(ValueError, match=r"channel 8 is out of range: layer 'conv5''s channels are 0..7"):
        occlusion_map(model, image, 8, 8, layer="conv5", channel=8)
    with pytest.raises(ValueError, match="target 5 is out of range: the model's classes are 0..4"):
        occlusion_map(model, image, 8, 8, target=5)


def test_bad_fill_batch_and_model():
    model, image = small_zfnet(), torch.zeros(3, 64, 64)
    with pytest.raises(ValueError, match="fill must be a float or 3 per-channel values, got 2 values"):
        occlusion_map(model, image, 8, 8, fill=torch.zeros(2))
    with pytest.raises(ValueError, match="fill must be a float"):
        occlusion_map(model, image, 8, 8, fill="grey")
    for fill in (float("nan"), [0.0, float("inf"), 0.0]):
        with pytest.raises(ValueError, match="fill must be finite"):
            occlusion_map(model, image, 8, 8, fill=fill)
    with pytest.raises(ValueError, match="fill must be float values"):
        occlusion_map(model, image, 8, 8, fill=torch.zeros(3, dtype=torch.uint8))
    for target in (1.5, True):
        with pytest.raises(ValueError, match="target must be an integer index"):
            occlusion_map(model, image, 8, 8, target=target)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        occlusion_map(model, image, 8, 8, batch_size=0)

    class Closure(nn.Module):
        def forward(self, x):
            return model(x)

    with pytest.raises(ValueError, match="no named layers"):
        occlusion_map(Closure().eval(), image, 8, 8)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    with pytest.raises(ValueError, match="'net' is a ZFNet container"):
        occlusion_map(Wrapped().eval(), image, 8, 8)

    class Skip(NamedSequential):
        def forward(self, x):  # not the plain sequence of its children
            return super().forward(x + 1)

    with pytest.raises(ValueError, match="does not receive the unchanged output"):
        occlusion_map(Skip(OrderedDict(model.named_children())).eval(), image, 8, 8)


def test_numpy_and_torch_integers_are_accepted():
    import numpy as np

    model, image = small_zfnet(), torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(10))
    reference = occlusion_map(model, image, 16, 16, layer=None)
    for window, stride in ((np.int64(16), np.int32(16)), (torch.tensor(16), torch.tensor(16))):
        result = occlusion_map(model, image, window, stride, layer=None)
        assert torch.equal(result.probabilities, reference.probabilities)
        assert result.window == 16 and isinstance(result.window, int)
