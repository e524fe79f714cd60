"""Invariance curves (course_utils.invariance) against independent computations.

References written here: a forward pass through the named children that keeps the chosen
layers' outputs, shifts built with torch.roll and a fill, torch.rot90, and torch's own
affine_grid/grid_sample for scaling.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.data import ImageTensorDataset
from course_utils.invariance import (
    TRANSFORMATIONS,
    centred_correct_images,
    invariance_curves,
    mask_centroids,
    transform_images,
)
from course_utils.models import NamedSequential, ZFNet, ZFNetConfig
from tests.conftest import children_outputs


def small_zfnet(seed: int = 0) -> ZFNet:
    torch.manual_seed(seed)
    return ZFNet(ZFNetConfig(conv_widths=(8, 16, 16, 16, 8), fc_widths=(32, 32), num_classes=5)).eval()


def random_images(count: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def manual_features(model: nn.Module, images: torch.Tensor, layers: tuple[str, ...]):
    """({layer: (N, D) flattened output}, softmax (N, K)), running the children one by one."""
    outputs = children_outputs(model, images)
    return {name: outputs[name].flatten(1) for name in layers}, list(outputs.values())[-1].softmax(dim=1)


# --------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [3, -5])
def test_integer_translation_is_a_roll_with_fill(shift):
    images = random_images(2, 16)
    fill = [0.5, -1.0, 2.0]
    shifted = transform_images(images, "translate", shift, fill=fill)
    expected = torch.roll(images, shifts=shift, dims=2)
    uncovered = slice(0, shift) if shift > 0 else slice(shift, None)
    expected[:, :, uncovered, :] = torch.tensor(fill).view(1, 3, 1, 1)
    torch.testing.assert_close(shifted, expected, atol=1e-5, rtol=0)


def test_identity_amounts_leave_images_unchanged():
    images = random_images(2, 16)
    for kind, identity in zip(TRANSFORMATIONS, (0, 1, 0)):
        torch.testing.assert_close(transform_images(images, kind, identity), images, atol=1e-6, rtol=0)


def test_rotation_by_360_degrees_is_the_identity_and_90_is_rot90():
    images = random_images(2, 16)
    torch.testing.assert_close(transform_images(images, "rotate", 360), images, atol=1e-5, rtol=0)
    # Positive angles turn counter-clockwise, like torch.rot90 with k=1 on (H, W).
    torch.testing.assert_close(
        transform_images(images, "rotate", 90), torch.rot90(images, 1, dims=(2, 3)), atol=1e-5, rtol=0
    )


def test_scaling_matches_affine_grid_inside_the_image():
    images = random_images(2, 16)
    zoomed = transform_images(images, "scale", 2.0)
    theta = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]).expand(2, 2, 3)  # output -> input coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(zoomed, expected, atol=1e-5, rtol=0)
    shrunk = transform_images(images, "scale", 0.5, fill=3.0)
    assert torch.allclose(shrunk[:, :, 0, :], torch.tensor(3.0))  # the border comes from outside


def test_transformation_errors():
    images = random_images(1, 16)
    with pytest.raises(ValueError, match="unknown transformation 'shear'; choose one of translate, scale, rotate"):
        transform_images(images, "shear", 1.0)
    with pytest.raises(ValueError, match="scale factor must be > 0"):
        transform_images(images, "scale", 0.0)
    with pytest.raises(ValueError, match="fill must be a float or 3 per-channel values"):
        transform_images(images, "rotate", 10, fill=[0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        transform_images(images, "rotate", float("nan"))


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, amounts", [("translate", [-6, 0, 4]), ("scale", [0.8, 1.0, 1.3]), ("rotate", [0, 30, 180])]
)
def test_curves_equal_an_independent_forward(kind, amounts):
    model = small_zfnet()
    images = random_images(3)
    labels = torch.tensor([0, 3, 4])
    curves = invariance_curves(model, images, kind, amounts, layers=("relu1", "relu7"), target=labels)
    original, original_softmax = manual_features(model, images, ("relu1", "relu7"))
    for column, amount in enumerate(amounts):
        features, softmax = manual_features(model, transform_images(images, kind, amount), ("relu1", "relu7"))
        for layer in ("relu1", "relu7"):
            distance = (features[layer].double() - original[layer].double()).norm(dim=1)
            torch.testing.assert_close(curves.distances[layer][:, column], distance, atol=1e-4, rtol=1e-5)
            relative = distance / original[layer].double().norm(dim=1)
            torch.testing.assert_close(curves.relative_distances[layer][:, column], relative, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(curves.probabilities[:, column], softmax[torch.arange(3), labels])
        assert torch.equal(curves.top_classes[:, column], softmax.argmax(dim=1))
    torch.testing.assert_close(curves.original_probabilities, original_softmax[torch.arange(3), labels])


@pytest.mark.parametrize("kind, identity", [("translate", 0), ("scale", 1), ("rotate", 0)])
def test_zero_transformation_gives_zero_distance(kind, identity):
    model = small_zfnet(seed=1)
    curves = invariance_curves(model, random_images(2, seed=1), kind, [identity, identity])
    for layer in curves.layers:
        assert torch.equal(curves.distances[layer], torch.zeros(2, 2, dtype=torch.float64))
    torch.testing.assert_close(curves.probabilities, curves.original_probabilities[:, None].expand(2, 2))


def test_shapes_defaults_and_metadata():
    model = small_zfnet(seed=2)
    images = random_images(4, seed=2)
    curves = invariance_curves(model, images, "translate", range(-4, 5, 2))
    assert curves.kind == "translate" and curves.layers == ("relu1", "relu7")
    assert curves.amounts.tolist() == [-4.0, -2.0, 0.0, 2.0, 4.0] and curves.amounts.dtype == torch.float64
    for layer in curves.layers:
        assert curves.distances[layer].shape == curves.relative_distances[layer].shape == (4, 5)
    assert curves.probabilities.shape == curves.top_classes.shape == (4, 5)
    _, softmax = manual_features(model, images, ())
    assert torch.equal(curves.target, softmax.argmax(dim=1))  # default: predicted classes
    assert torch.equal(curves.top_classes[:, 2], curves.target)


def test_in_place_relus_and_mode_are_handled():
    """A conv output hooked before an in-place ReLU keeps its pre-activation values; a model in
    training mode is refused, never switched behind the caller's back."""
    torch.manual_seed(3)
    model = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
                ("relu1", nn.ReLU(inplace=True)),
                ("pool1", nn.AdaptiveAvgPool2d(2)),
                ("flatten", nn.Flatten()),
                ("drop", nn.Dropout(0.5)),
                ("fc8", nn.Linear(16, 3)),
            ]
        )
    ).train()
    images = random_images(2, 12, seed=3)
    with pytest.raises(ValueError, match="training mode"):
        invariance_curves(model, images, "rotate", [0, 45], layers=("conv1",))
    assert model.training and model.drop.training
    model.eval()
    model.drop.train()  # one submodule left in training mode is refused too
    with pytest.raises(ValueError, match="'drop'.*training mode"):
        invariance_curves(model, images, "rotate", [0, 45], layers=("conv1",))
    curves = invariance_curves(model.eval(), images, "rotate", [0, 45], layers=("conv1",))
    original, _ = manual_features(model, images, ("conv1",))
    rotated, _ = manual_features(model, transform_images(images, "rotate", 45), ("conv1",))
    assert bool((original["conv1"] < 0).any())  # the hook saw pre-ReLU values
    expected = (rotated["conv1"] - original["conv1"]).double().norm(dim=1)
    torch.testing.assert_close(curves.distances["conv1"][:, 1], expected)


def test_errors():
    model, images = small_zfnet(), random_images(2)
    with pytest.raises(ValueError, match="unknown transformation 'flip'"):
        invariance_curves(model, images, "flip", [0])
    with pytest.raises(KeyError, match="unknown layer 'layer7'.*relu7"):
        invariance_curves(model, images, "rotate", [0], layers=("relu1", "layer7"))
    with pytest.raises(ValueError, match="distinct layers"):
        invariance_curves(model, images, "rotate", [0], layers=("relu1", "relu1"))
    with pytest.raises(ValueError, match="amounts is empty"):
        invariance_curves(model, images, "rotate", [])
    with pytest.raises(ValueError, match="scale factor must be > 0"):
        invariance_curves(model, images, "scale", [1.0, -0.5])
    with pytest.raises(ValueError, match=r"target must have shape \(2,\)"):
        invariance_curves(model, images, "rotate", [0], target=[1, 2, 3])
    with pytest.raises(ValueError, match=r"target must lie in 0..4"):
        invariance_curves(model, images, "rotate", [0], target=[1, 5])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\).*image\[None\]"):
        invariance_curves(model, images[0], "rotate", [0])
    with pytest.raises(ValueError, match="grayscale"):
        invariance_curves(model, images[:, :1], "rotate", [0])
    with pytest.raises(ValueError, match="normalize"):
        invariance_curves(model, images.to(torch.uint8), "rotate", [0])


def test_hooks_are_removed_when_the_forward_fails():
    model = small_zfnet()
    wrong_size = random_images(2, 32)  # fc6 expects 64x64 inputs
    with pytest.raises(ValueError, match="layer 'fc6' failed on its input"):
        invariance_curves(model, wrong_size, "rotate", [0, 10])
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())
    with pytest.raises(ValueError):
        invariance_curves(model, random_images(2), "rotate", [0], target=[9, 9])
    assert all(not module._forward_hooks for module in model.modules())


def test_mask_centroids_by_hand():
    masks = torch.zeros(3, 5, 7, dtype=torch.bool)
    masks[0, 1:3, 4:7] = True  # rows 1-2, columns 4-6
    masks[1, 4, 0] = True
    torch.testing.assert_close(mask_centroids(masks)[:2], torch.tensor([[1.5, 5.0], [4.0, 0.0]], dtype=torch.float64))
    assert mask_centroids(masks)[2].isnan().all()  # empty mask
    with pytest.raises(ValueError, match="bool"):
        mask_centroids(masks.float())


def test_centred_correct_images_picks_the_most_centred_correct_ones_per_class():
    # 8 images of 2 classes; the model below predicts class 0 for every image
    images = torch.zeros(8, 3, 9, 9, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 0, 1, 0, 0])
    masks = torch.zeros(8, 9, 9, dtype=torch.bool)
    for index, (row, col) in enumerate([(0, 0), (4, 4), (3, 4), (4, 4), (4, 6), (4, 4), (4, 4), (8, 8)]):
        masks[index, row, col] = True
    masks[6] = False  # no object pixel: never chosen
    dataset = ImageTensorDataset(images, labels, ["zero", "one"], (0.5,) * 3, (0.25,) * 3, {"masks": masks})

    class AlwaysZero(nn.Module):
        def forward(self, x):
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], dim=1)

    model = AlwaysZero()
    assert centred_correct_images(model, dataset, per_class=2).tolist() == [1, 2]  # class 1: none correct
    assert centred_correct_images(model, dataset, per_class=9).tolist() == [1, 2, 4, 0, 7]
    assert centred_correct_images(model, dataset, per_class=9, search=3).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="masks"):
        centred_correct_images(model, ImageTensorDataset(images, labels, ["zero", "one"], (0.5,) * 3, (0.25,) * 3))
