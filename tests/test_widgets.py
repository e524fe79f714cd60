"""The explorers (course_utils.widgets), driven headless: set a control's value, check what is shown
against independent computations (mining, deconvnet, occlusion map, invariance curves)."""

from __future__ import annotations

import io
import re

import ipywidgets
import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import widgets
from course_utils.activations import mine_top_activations
from course_utils.deconvnet import project
from course_utils.display import (
    MOSAIC_GAP,
    display_scale,
    normalize_projection,
    receptive_field_window,
)
from course_utils.invariance import invariance_curves, transform_images
from course_utils.layers import layer_outputs
from course_utils.models import ZFNet
from course_utils.occlusion import occlusion_map
from tests.conftest import colour_dataset

NUM_CLASSES = 6


@pytest.fixture(scope="module")
def model() -> ZFNet:
    torch.manual_seed(0)
    return ZFNet(image_size=32, conv_widths=(4, 6, 8, 8, 6), fc_widths=(16, 16), num_classes=NUM_CLASSES).eval()


@pytest.fixture(scope="module")
def data():
    return colour_dataset(24, size=32, classes=NUM_CLASSES, seed=3)


@pytest.fixture(scope="module")
def deconvnet(model, data) -> widgets.DeconvnetExplorer:
    return widgets.deconvnet_explorer(model, data, layers=["conv1", "conv2", "conv3"], progress=False)


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def count_redraws(explorer: widgets.Explorer) -> list[dict]:
    """Record the control values of every redraw of ``explorer`` from now on."""
    calls: list[dict] = []
    draw = explorer._draw

    def counting(**values):
        calls.append(values)
        draw(**values)

    explorer._draw = counting
    return calls


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Deconvnet explorer
# --------------------------------------------------------------------------------------------


def test_deconvnet_explorer_is_a_vbox_with_its_controls_as_attributes(deconvnet):
    assert isinstance(deconvnet, ipywidgets.VBox)
    assert deconvnet.controls == {"layer": deconvnet.layer, "channel": deconvnet.channel, "image": deconvnet.image}
    assert list(deconvnet.layer.options) == ["conv1", "conv2", "conv3"]
    assert deconvnet.channel.continuous_update is False


def test_deconvnet_explorer_shows_the_projections_of_the_mined_top9(deconvnet, model, data):
    deconvnet.layer.value = "conv2"
    deconvnet.channel.value = 4
    top = mine_top_activations(model, data, ["conv2"], progress=False)["conv2"]
    assert torch.equal(deconvnet.tops["conv2"].image_indices, top.image_indices)
    expected = project(model, data.normalize(data.images), "conv2", top.selections([4]))
    assert deconvnet.projections.shape == (9, 3, 32, 32)
    torch.testing.assert_close(deconvnet.projections, expected, rtol=1e-5, atol=1e-6)


def test_deconvnet_mosaics_show_the_receptive_field_windows_of_the_projections_and_patches(deconvnet, model, data):
    deconvnet.layer.value = "conv1"
    deconvnet.channel.value = 2
    top = deconvnet.tops["conv1"]
    scale = deconvnet.scale
    for view, j, picture in (
        (deconvnet.projection_view, 0, normalize_projection(deconvnet.projections[0])),
        (deconvnet.projection_view, 4, normalize_projection(deconvnet.projections[4])),
        (deconvnet.patch_view, 8, data.images[int(top.image_indices[2, 8])]),
    ):
        y, x = (int(v) for v in top.locations[2, j])
        window = receptive_field_window(model, "conv1", picture, y, x)
        size = window.shape[-1] * scale
        row, column = divmod(j, 3)
        shown = decoded(view.value)
        assert shown.shape == (3 * size + 2 * MOSAIC_GAP, 3 * size + 2 * MOSAIC_GAP, 3)
        cell = shown[row * (size + MOSAIC_GAP) :][:size, column * (size + MOSAIC_GAP) :][:, :size]
        expected = (window.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(cell[::scale, ::scale], expected)


def test_deconvnet_channel_change_redraws_once_with_new_pictures(deconvnet):
    deconvnet.layer.value = "conv3"
    deconvnet.channel.value = 0
    before = (deconvnet.projection_view.value, deconvnet.patch_view.value, deconvnet.image_projection_view.value)
    calls = count_redraws(deconvnet)
    deconvnet.channel.value = 1
    assert calls == [{"layer": "conv3", "channel": 1, "image": deconvnet.image.value}]
    after = (deconvnet.projection_view.value, deconvnet.patch_view.value, deconvnet.image_projection_view.value)
    assert all(old != new for old, new in zip(before, after))


def test_deconvnet_layer_change_clamps_the_channel_and_redraws_once(deconvnet, model, data):
    deconvnet.layer.value = "conv3"
    deconvnet.channel.value = 7  # conv3 has 8 channels, conv2 has 6
    calls = count_redraws(deconvnet)
    deconvnet.layer.value = "conv2"
    assert (deconvnet.channel.max, deconvnet.channel.value) == (5, 5)
    assert calls == [{"layer": "conv2", "channel": 5, "image": deconvnet.image.value}]
    top = deconvnet.tops["conv2"]
    expected = project(model, data.normalize(data.images), "conv2", top.selections([5]))
    torch.testing.assert_close(deconvnet.projections, expected, rtol=1e-5, atol=1e-6)


def test_deconvnet_explorer_projects_the_chosen_images_strongest_unit(deconvnet, model, data):
    deconvnet.layer.value = "conv2"
    deconvnet.channel.value = 3
    deconvnet.image.value = 11
    image = data.normalize(data.images[11:12])
    feature_map = layer_outputs(model, image, ["conv2"])["conv2"][0, 3]
    y, x = divmod(int(feature_map.argmax()), feature_map.shape[-1])
    assert deconvnet.image_unit == (y, x, pytest.approx(float(feature_map.max())))
    expected = project(model, image, "conv2", torch.tensor([[0, 3, y, x]]))[0]
    torch.testing.assert_close(deconvnet.image_projection, expected, rtol=1e-5, atol=1e-6)
    assert decoded(deconvnet.image_view.value).shape == (32 * 6, 32 * 6, 3)
    assert f"(y={y}, x={x})" in deconvnet.caption.value


def test_deconvnet_explorer_refuses_bad_input(model, data):
    with pytest.raises(ValueError, match="no spatial receptive field"):
        widgets.deconvnet_explorer(model, data, layers=["fc6"], progress=False)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        widgets.deconvnet_explorer(model, data, layers=["conv9"], progress=False)
    with pytest.raises(ValueError, match="at least one layer"):
        widgets.deconvnet_explorer(model, data, layers=[], progress=False)
    with pytest.raises(ValueError, match="channel 6 is out of range"):
        widgets.deconvnet_explorer(model, data, layers=["conv2"], channel=6, progress=False)
    with pytest.raises(ValueError, match="image index 24 is out of range"):
        widgets.deconvnet_explorer(model, data, layers=["conv2"], image=24, progress=False)
    with pytest.raises(TypeError, match="ImageTensorDataset"):
        widgets.deconvnet_explorer(model, data.images, progress=False)
    model.train()
    try:
        with pytest.raises(ValueError, match="model.eval()"):
            widgets.deconvnet_explorer(model, data, progress=False)
    finally:
        model.eval()


def test_explorers_refuse_data_the_model_cannot_take(model):
    with pytest.raises(ValueError, match=r"cannot take this dataset's \(3, 64, 64\) images"):
        widgets.occlusion_explorer(model, colour_dataset(4, size=64))
    with pytest.raises(ValueError, match="labels 0..7"):
        widgets.invariance_explorer(model, colour_dataset(8, size=32, classes=8))


# --------------------------------------------------------------------------------------------
# Occlusion explorer
# --------------------------------------------------------------------------------------------


def test_occlusion_probability_equals_the_occlusion_map_at_that_position(model, data):
    explorer = widgets.occlusion_explorer(model, data, image=5, window=8)
    explorer.y.value, explorer.x.value = 8, 12
    label = int(data.labels[5])
    result = occlusion_map(model, data.normalize(data.images[5]), window=8, stride=4, layer=None, target=label)
    assert (int(result.rows[2]), int(result.cols[3])) == (8, 12)
    torch.testing.assert_close(explorer.probabilities, result.probabilities[2, 3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(explorer.clean_probabilities, result.unoccluded_probabilities, rtol=1e-5, atol=1e-6)
    shown = float(re.search(r"<b>([0-9.]+)</b>", explorer.probability_label.value).group(1))
    assert shown == pytest.approx(float(result.probability[2, 3]), abs=5e-5)
    assert f"P({data.class_names[label]})" in explorer.probability_label.value


def test_occlusion_slider_moves_the_square_in_the_picture(model, data):
    explorer = widgets.occlusion_explorer(model, data, image=2, window=8)
    explorer.x.value, explorer.y.value = 0, 0
    before = explorer.image_view.value
    calls = count_redraws(explorer)
    explorer.x.value = 16
    assert len(calls) == 1 and explorer.image_view.value != before
    image = data.normalize(data.images[2])
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[0:8, 16:24] = True
    assert (explorer.occluded[:, inside] == 0).all()  # the dataset mean
    assert torch.equal(explorer.occluded[:, ~inside], image[:, ~inside])
    scale = display_scale(32)
    shown = decoded(explorer.image_view.value)
    assert shown.shape == (32 * scale, 32 * scale, 3)
    assert shown[0, 16 * scale].tolist() == [230, 25, 75]  # outline at the square's corner
    assert shown[0, 8 * scale].tolist() != [230, 25, 75]


def test_occlusion_window_change_keeps_the_occluder_inside_and_redraws_once(model, data):
    explorer = widgets.occlusion_explorer(model, data, window=4)
    explorer.y.value, explorer.x.value = 20, 28
    calls = count_redraws(explorer)
    explorer.window.value = 10
    assert (explorer.y.max, explorer.x.max) == (22, 22)
    assert (explorer.y.value, explorer.x.value) == (20, 22)
    assert calls == [{"image": 0, "window": 10, "y": 20, "x": 22}]


def test_occlusion_top_classes_list_the_five_most_probable_in_order(model, data):
    explorer = widgets.occlusion_explorer(model, data, image=7)
    names = re.findall(r"padding-right:6px'>([^<]+)</td>", explorer.top_classes_view.value)
    shown = [float(v) for v in re.findall(r"padding-left:6px'>([0-9.]+)</td>", explorer.top_classes_view.value)]
    order = explorer.probabilities.argsort(descending=True)[:5]
    assert names == [data.class_names[int(c)] for c in order]
    assert shown == pytest.approx(explorer.probabilities[order].tolist(), abs=5e-4)


def test_occlusion_explorer_refuses_bad_input(model, data):
    with pytest.raises(ValueError, match=r"window must be at most 32 \(the image is 32x32\), got 33"):
        widgets.occlusion_explorer(model, data, window=33)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        widgets.occlusion_explorer(model, data, window=2.5)
    with pytest.raises(ValueError, match="fill must be a float or 3 per-channel values"):
        widgets.occlusion_explorer(model, data, fill=[0.0, 0.0])
    with pytest.raises(ValueError, match="image index -1 is out of range"):
        widgets.occlusion_explorer(model, data, image=-1)


# --------------------------------------------------------------------------------------------
# Invariance explorer
# --------------------------------------------------------------------------------------------

AMOUNTS = {"translate": [-4.0, 0.0, 4.0], "rotate": [0.0, 45.0, 90.0], "scale": [0.8, 1.0, 1.2]}


@pytest.fixture
def invariance(model, data) -> widgets.InvarianceExplorer:
    return widgets.invariance_explorer(model, data, image_indices=[3, 10, 17], amounts=AMOUNTS)


def test_invariance_marks_the_point_of_the_independently_computed_curves(invariance, model, data):
    invariance.image.value = 1  # dataset image 10
    invariance.kind.value = "rotate"
    invariance.amount.value = 90.0
    image = data.normalize(data.images[10:11])
    torch.testing.assert_close(invariance.transformed, transform_images(image, "rotate", 90.0)[0])
    reference = invariance_curves(model, image, "rotate", [90.0], target=data.labels[10:11])
    assert invariance.marked == pytest.approx(
        {
            "relu1": float(reference.distances["relu1"][0, 0]),
            "relu7": float(reference.distances["relu7"][0, 0]),
            "probability": float(reference.probabilities[0, 0]),
        },
        rel=1e-4,
        abs=1e-6,
    )


def test_invariance_curves_of_every_kind_are_computed_once_when_the_explorer_is_built(invariance):
    assert list(invariance.curves) == list(AMOUNTS)  # every kind, before any update
    rotate = invariance.curves["rotate"]
    invariance.kind.value = "rotate"
    for amount in (45.0, 90.0, 0.0):
        invariance.amount.value = amount
    invariance.image.value = 2
    assert invariance.curves["rotate"] is rotate and list(invariance.curves) == list(AMOUNTS)
    assert rotate.probabilities.shape == (3, 3)


def test_invariance_kind_change_resets_the_amount_and_redraws_once(invariance):
    invariance.amount.value = 4.0
    calls = count_redraws(invariance)
    invariance.kind.value = "scale"
    assert [value for _, value in invariance.amount.options] == AMOUNTS["scale"]
    assert calls == [{"image": 0, "kind": "scale", "amount": 1.0}]


def test_invariance_marker_moves_right_with_the_amount(invariance):
    def marker_columns() -> np.ndarray:
        shown = decoded(invariance.curves_view.value)
        return np.nonzero((shown == [230, 25, 75]).all(axis=-1))[1]

    invariance.amount.value = -4.0
    left, before = marker_columns(), invariance.image_view.value
    invariance.amount.value = 4.0
    right = marker_columns()
    assert left.size > 0 and right.size > 0
    assert right.mean() > left.mean()
    assert invariance.image_view.value != before


def test_invariance_explorer_refuses_bad_input(model, data):
    with pytest.raises(ValueError, match="unknown transformation 'shear'"):
        widgets.invariance_explorer(model, data, amounts={"shear": [0.0]})
    with pytest.raises(ValueError, match="distinct amounts"):
        widgets.invariance_explorer(model, data, amounts={"rotate": [0.0, 0.0]})
    with pytest.raises(ValueError, match="image index 99 is out of range"):
        widgets.invariance_explorer(model, data, image_indices=[99])
    with pytest.raises(ValueError, match="image_indices is empty"):
        widgets.invariance_explorer(model, data, image_indices=[])
    with pytest.raises(KeyError, match="unknown layer 'relu9'"):
        widgets.invariance_explorer(model, data, layers=("relu1", "relu9"))


def test_invariance_default_images_are_the_first_of_each_class(model, data):
    explorer = widgets.invariance_explorer(model, data, amounts={"translate": [0.0, 2.0]})
    expected = [int(torch.nonzero(data.labels == label)[0]) for label in range(NUM_CLASSES)]
    assert explorer.image_indices == expected
    assert explorer.amount.value == 0.0


def test_a_picture_of_an_explorer_shows_its_controls_views_and_readouts(deconvnet):
    """The site's static picture: the views' own pixels side by side under their captions (the
    first at the left margin, below the control line and the caption line), the control values
    and the caption text drawn in (dark pixels on the text lines)."""
    deconvnet.channel.value = 2
    picture = decoded(deconvnet.picture())
    views = [decoded(view.value) for view in (deconvnet.projection_view, deconvnet.patch_view)]
    gap, line = widgets._PICTURE_GAP, 20
    left = gap
    for view in views:
        height, width = view.shape[:2]
        np.testing.assert_array_equal(picture[2 * line : 2 * line + height, left : left + width], view)
        left += width + gap
    assert picture.shape[1] >= left
    assert (picture[:line] < 128).any() and (picture[-line:] < 128).any()  # control values, caption text
    assert (picture[:, : gap - 1] == 255).all()  # a white margin left of everything
