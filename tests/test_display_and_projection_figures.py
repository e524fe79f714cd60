"""The display rules (course_utils.display) and the projection figures (course_utils.figures): the projection normalization, receptive-field windows,
the figures' structure (axes, pictures, labels) and mean unpooling against hand computations."""

from __future__ import annotations

import os
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402
from torch import nn  # noqa: E402

from course_utils import display, figures  # noqa: E402
from course_utils.activations import (  # noqa: E402
    TopK,
    image_patch,
    mine_top_activations,
    receptive_field,
    select_feature_maps,  # noqa: E402
)
from course_utils.attribution import mean_unpool, project_mean_unpooling  # noqa: E402
from course_utils.data import ImageTensorDataset  # noqa: E402
from course_utils.deconvnet import project, project_activation, project_top_activations  # noqa: E402
from course_utils.layers import layer_outputs  # noqa: E402
from course_utils.models import NamedSequential, ZFNet  # noqa: E402
from tests.conftest import colour_dataset  # noqa: E402


def small_zfnet(seed: int) -> ZFNet:
    torch.manual_seed(seed)
    return ZFNet(image_size=32, conv_widths=(4, 6, 8, 8, 6), fc_widths=(16, 16), num_classes=3).eval()


@pytest.fixture(scope="module")
def model() -> ZFNet:
    return small_zfnet(0)


@pytest.fixture(scope="module")
def data():
    return colour_dataset(24, size=32, seed=2)


def shown_pictures(figure) -> list[np.ndarray]:
    return [image.get_array() for axis in figure.axes for image in axis.images]


# --------------------------------------------------------------------------------------------
# normalize_projection
# --------------------------------------------------------------------------------------------


def test_normalize_projection_maps_zero_to_grey_and_extremes_to_black_and_white():
    projection = torch.tensor([[[0.0, 2.0], [-4.0, 1.0]], [[0.5, 0.0], [0.0, -1.0]], [[0.0, 0.0], [3.0, 0.0]]])
    shown = display.normalize_projection(projection)
    assert shown.shape == projection.shape
    assert shown[0, 0, 0] == 0.5 and shown[1, 0, 1] == 0.5  # zero -> grey
    assert shown[0, 1, 0] == 0.0  # strongest negative (-4) -> 0
    assert torch.allclose(shown[0, 0, 1], torch.tensor(0.75))  # 2 / 4 -> 0.5 + 0.25
    assert torch.allclose(shown[2, 1, 0], torch.tensor(0.875))  # colour channels share one scale
    assert ((shown > 0.5) == (projection > 0)).all() and ((shown < 0.5) == (projection < 0)).all()


def test_normalize_projection_scales_each_projection_of_a_batch_on_its_own():
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(2, 4, 3, 5, 5, generator=generator)
    batch[0, 1] *= 1000.0
    shown = display.normalize_projection(batch)
    assert shown.shape == batch.shape
    assert 0.0 <= shown.min() and shown.max() <= 1.0
    extremes = torch.maximum(shown.amax(dim=(-3, -2, -1)), 1 - shown.amin(dim=(-3, -2, -1)))
    assert torch.allclose(extremes, torch.ones(2, 4))  # every projection reaches 0 or 1
    assert torch.allclose(shown[0, 1], display.normalize_projection(batch[0, 1] / 1000.0), atol=1e-6)


def test_normalize_projection_of_constant_input_does_not_divide_by_zero():
    assert torch.equal(display.normalize_projection(torch.zeros(3, 4, 4)), torch.full((3, 4, 4), 0.5))
    assert torch.equal(display.normalize_projection(torch.full((3, 2, 2), 7.0)), torch.ones(3, 2, 2))
    assert torch.equal(display.normalize_projection(torch.full((3, 2, 2), -0.1)), torch.zeros(3, 2, 2))


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(4, 4), "(C, H, W)"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "float"),
        (torch.tensor([[[0.0, float("nan")]]]), "NaN"),
    ],
)
def test_normalize_projection_refuses_bad_input(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        display.normalize_projection(bad)


def test_notebook_setup_uses_one_thread_per_core_unless_told_and_refuses_zero():
    before = torch.get_num_threads()
    try:
        with matplotlib.rc_context():  # notebook_setup also sets the figures' dpi
            display.notebook_setup(threads=1)
            assert torch.get_num_threads() == 1
            display.notebook_setup()
            assert torch.get_num_threads() == (os.cpu_count() or 1)
            with pytest.raises(ValueError, match="threads must be at least 1"):
                display.notebook_setup(threads=0)
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Receptive-field windows
# --------------------------------------------------------------------------------------------


def test_receptive_field_window_inside_the_image_is_the_patch(model):
    size, stride, offset = receptive_field(model, "conv1")  # 7, 2, -3
    picture = torch.arange(3 * 32 * 32, dtype=torch.float32).view(3, 32, 32) / (3 * 32 * 32)
    window = display.receptive_field_window(model, "conv1", picture, 5, 6)
    assert window.shape == (3, size, size)
    top, left = 5 * stride + offset, 6 * stride + offset
    assert torch.equal(window, picture[:, top : top + size, left : left + size])


def test_receptive_field_window_fills_what_lies_outside_the_image(model):
    size, stride, offset = receptive_field(model, "conv3")  # larger than the 32x32 image
    picture = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    window = display.receptive_field_window(model, "conv3", picture, 0, 1, fill=0.25)
    assert window.shape == (3, size, size)
    patch = image_patch(model, picture, "conv3", 0, 1).float() / 255  # the clipped box
    top, left = -offset, 1 * stride + offset  # the image's first row in the window
    inside = window[:, top : top + patch.shape[1], max(0, -left) : max(0, -left) + patch.shape[2]]
    assert torch.equal(inside, patch)
    assert float(window.sum()) == pytest.approx(float(patch.sum()) + 0.25 * (window.numel() - patch.numel()), rel=1e-5)


def test_receptive_field_window_refuses_a_batch(model):
    with pytest.raises(ValueError, match="one \\(C, H, W\\) tensor"):
        display.receptive_field_window(model, "conv1", torch.zeros(2, 3, 32, 32), 0, 0)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_image_table_has_one_axis_per_cell_and_draws_the_given_pictures():
    red = torch.zeros(3, 4, 4, dtype=torch.uint8)
    red[0] = 255
    grey = torch.full((3, 5, 5), 0.5)
    figure = display.image_table([[red, grey, None], [grey, red, red]], ["first", "second"], ["a", "b", "c"], "A title")
    assert len(figure.axes) == 6
    pictures = shown_pictures(figure)
    assert len(pictures) == 5
    assert np.array_equal(pictures[0], np.dstack([np.ones((4, 4)), np.zeros((4, 4)), np.zeros((4, 4))]))
    assert [a.get_title() for a in figure.axes[:3]] == ["a", "b", "c"]
    assert figure.axes[3].get_ylabel() == "second"
    assert figure._suptitle.get_text() == "A title"


def test_class_gallery_titles_each_picture_with_its_class_broken_at_the_part_names():
    images = torch.arange(6, dtype=torch.uint8).repeat_interleave(3 * 4 * 4).view(6, 3, 4, 4)
    dataset = ImageTensorDataset(
        images,
        torch.tensor([0, 1, 2, 0, 1, 2]),
        ["face:round-eyes/none-ears", "star", "car:two-wheels"],
        (0.5,) * 3,
        (0.25,) * 3,
    )
    figure = figures.class_gallery(dataset, classes=["star", "face:round-eyes/none-ears"], per_class=2, columns=3)
    titled = [axis for axis in figure.axes if axis.images]
    assert len(figure.axes) == 6 and len(titled) == 4  # 2 rows of 3, two blank cells
    assert [axis.get_title() for axis in titled] == [
        "star",
        "star",
        "face:\nround-eyes\nnone-ears",
        "face:\nround-eyes\nnone-ears",
    ]
    star_pictures = {int(axis.images[0].get_array()[0, 0, 0] * 255 + 0.5) for axis in titled[:2]}
    assert star_pictures == {1, 4}  # the two images of class 1, each shown once
    assert "2 examples of each of 2 classes" in figure._suptitle.get_text()
    everything = figures.class_gallery(dataset, columns=8)
    assert sum(bool(axis.images) for axis in everything.axes) == 3


def test_class_gallery_refuses_unknown_classes_and_bad_sizes():
    dataset = colour_dataset(6, size=8, seed=0)
    with pytest.raises(ValueError, match="unknown classes"):
        figures.class_gallery(dataset, classes=["no such class"])
    with pytest.raises(ValueError, match="at least 1"):
        figures.class_gallery(dataset, per_class=0)


def test_image_table_refuses_mismatched_labels():
    picture = torch.zeros(3, 2, 2)
    with pytest.raises(ValueError, match="2 row labels for 1 rows"):
        display.image_table([[picture]], ["a", "b"])
    with pytest.raises(ValueError, match="at least one row"):
        display.image_table([])


def test_top9_figure_shows_each_channels_projections_beside_its_patches(model, data):
    top = mine_top_activations(model, data, ["conv2"], k=4, progress=False)["conv2"]
    channels = [0, 3, 5]
    projections = project_top_activations(model, data, top, channels)
    figure = figures.top9_figure(model, data, top, channels, projections, columns=2)
    assert len(figure.axes) == len(channels) * 2 * top.k
    pictures = shown_pictures(figure)
    assert len(pictures) == len(channels) * 2 * top.k
    # first block, strongest entry: projection cell then its image patch
    y, x = (int(v) for v in top.locations[0, 0])
    expected_projection = display.receptive_field_window(
        model, "conv2", display.normalize_projection(projections[0, 0]), y, x
    )
    expected_patch = display.receptive_field_window(model, "conv2", data.images[int(top.image_indices[0, 0])], y, x)
    assert np.allclose(pictures[0], expected_projection.permute(1, 2, 0).numpy())
    assert np.allclose(pictures[1], expected_patch.permute(1, 2, 0).numpy())
    # computing the projections inside gives the same pictures
    again = shown_pictures(figures.top9_figure(model, data, top, channels))
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(pictures, again))


def test_top9_figure_refuses_projections_of_another_shape(model, data):
    top = mine_top_activations(model, data, ["conv1"], k=3, progress=False)["conv1"]
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 3, H, W\)"):
        figures.top9_figure(model, data, top, [0, 1], torch.zeros(2, 4, 3, 32, 32))
    with pytest.raises(ValueError, match="at least one channel"):
        figures.top9_figure(model, data, top, [])


def test_feature_evolution_figure_has_rows_of_maps_and_columns_of_snapshots(data):
    snapshots = {"epoch 1": small_zfnet(1), "epoch 2": small_zfnet(2)}
    channels = {"conv1": [0, 2], "conv3": [4]}
    figure = figures.feature_evolution_figure(snapshots, data, channels)
    assert len(figure.axes) == 3 * 2
    assert [axis.get_title() for axis in figure.axes[:2]] == ["epoch 1", "epoch 2"]
    pictures = shown_pictures(figure)
    assert len(pictures) == 6
    # the conv3 row of "epoch 2": the strongest conv3 map-4 activation over the data, projected
    later = snapshots["epoch 2"]
    images = data.normalize(data.images)
    activations = layer_outputs(later, images, ["conv3"])["conv3"][:, 4]
    image_index = int(activations.flatten(1).max(1).values.argmax())
    y, x = divmod(int(activations[image_index].argmax()), activations.shape[-1])
    projection = project_activation(later, images[image_index], "conv3", 4, (y, x))
    expected = display.receptive_field_window(later, "conv3", display.normalize_projection(projection), y, x)
    assert np.allclose(pictures[5], expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_compare_projections_figure_has_a_patch_column_and_one_column_per_method(model, data):
    images = data.normalize(data.images[:3])
    selections = torch.tensor([[0, 1, 2, 3], [2, 0, 4, 4]])
    maps = {"deconvnet": project(model, images, "conv2", selections), "random": torch.randn(2, 3, 32, 32)}
    figure = figures.compare_projections_figure(model, data.images[:3], "conv2", selections, maps, title="methods")
    assert len(figure.axes) == 2 * 3
    assert [axis.get_title() for axis in figure.axes[:3]] == ["image patch", "deconvnet", "random"]
    assert len(shown_pictures(figure)) == 6
    with pytest.raises(ValueError, match="map 'random' must have shape"):
        figures.compare_projections_figure(
            model, data.images[:3], "conv2", selections, {"random": torch.zeros(3, 3, 32, 32)}
        )


def test_unit_projection_figure_draws_the_receptive_field_box_on_image_and_projection(model, data):
    image = data.normalize(data.images[0])
    projection = project_activation(model, image, "conv2", 1, (4, 4))  # a box fully inside the image
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:20, 8:20] = True
    figure = figures.unit_projection_figure(model, data.images[0], "conv2", (4, 4), projection, mask)
    images = [axis for axis in figure.axes if axis.images]
    assert len(images) == 3
    boxes = [patch for axis in images for patch in axis.patches if isinstance(patch, Rectangle)]
    size, stride, offset = receptive_field(model, "conv2")
    assert len(boxes) == 2 and all(box.get_width() == size and box.get_height() == size for box in boxes)
    assert boxes[0].get_xy() == (4 * stride + offset - 0.5, 4 * stride + offset - 0.5)
    with pytest.raises(ValueError, match="mask must be"):
        figures.unit_projection_figure(model, data.images[0], "conv2", (4, 4), projection, mask[:5])


# --------------------------------------------------------------------------------------------
# Mean unpooling
# --------------------------------------------------------------------------------------------


def mean_unpool_by_loops(signal: torch.Tensor, kernel: int, stride: int, padding: int, size: int) -> torch.Tensor:
    """Independent reference: each pooled value / kernel^2 added to every in-image position of its window."""
    out = torch.zeros(*signal.shape[:2], size, size)
    for i in range(signal.shape[2]):
        for j in range(signal.shape[3]):
            for dy in range(kernel):
                for dx in range(kernel):
                    y, x = i * stride - padding + dy, j * stride - padding + dx
                    if 0 <= y < size and 0 <= x < size:
                        out[:, :, y, x] += signal[:, :, i, j] / kernel**2
    return out


def test_mean_unpool_spreads_each_value_over_its_window():
    signal = torch.tensor([[[[9.0, 18.0], [0.0, -9.0]]]])
    spread = mean_unpool(signal, nn.MaxPool2d(3, stride=2, padding=1), (4, 4))
    # by hand, values / 9 = [[1, 2], [0, -1]]; windows (0, 0): rows 0-1, cols 0-1 (the rest is
    # padding); (0, 1): rows 0-1, cols 1-3; (1, 0): rows 1-3, cols 0-1; (1, 1): rows 1-3, cols 1-3
    expected = torch.tensor(
        [[1.0, 3.0, 2.0, 2.0], [1.0, 2.0, 1.0, 1.0], [0.0, -1.0, -1.0, -1.0], [0.0, -1.0, -1.0, -1.0]]
    )
    assert torch.allclose(spread[0, 0], expected)
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(2, 3, 4, 4, generator=generator)
    assert torch.allclose(
        mean_unpool(signal, nn.MaxPool2d(3, stride=2, padding=1), (8, 8)),
        mean_unpool_by_loops(signal, 3, 2, 1, 8),
        atol=1e-6,
    )


def test_mean_unpool_refuses_a_wrong_size_and_dilation():
    with pytest.raises(ValueError, match="pools to"):
        mean_unpool(torch.zeros(1, 1, 2, 2), nn.MaxPool2d(3, stride=2, padding=1), (8, 8))
    with pytest.raises(ValueError, match="dilation"):
        mean_unpool(torch.zeros(1, 1, 2, 2), nn.MaxPool2d(3, stride=2, dilation=2), (8, 8))


def tiny_pooling_net() -> NamedSequential:
    torch.manual_seed(5)
    return NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
                ("conv2", nn.Conv2d(4, 5, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("fc", nn.Flatten()),
            ]
        )
    ).eval()


def test_project_mean_unpooling_equals_the_reverse_pass_written_out():
    net = tiny_pooling_net()
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    activations = layer_outputs(net, images, ["relu2"])["relu2"]
    strongest = [divmod(int(activations[i, c].argmax()), 4) for i, c in ((0, 1), (1, 2))]
    selections = torch.tensor([[0, 1, *strongest[0]], [1, 2, *strongest[1]]])
    ours = project_mean_unpooling(net, images, "relu2", selections)
    for row, (image_index, channel, y, x) in enumerate(selections.tolist()):
        signal = torch.zeros(1, 5, 4, 4)
        signal[0, channel, y, x] = activations[image_index, channel, y, x]
        signal = F.conv_transpose2d(F.relu(signal), net.conv2.weight, padding=1)  # relu2, conv2
        signal = mean_unpool_by_loops(signal, 3, 2, 1, 8)  # pool1, mean
        expected = F.conv_transpose2d(F.relu(signal), net.conv1.weight, padding=1)  # relu1, conv1
        assert expected.abs().max() > 0
        assert torch.allclose(ours[row], expected[0], atol=1e-5)
    switches = project(net, images, "relu2", selections)
    assert not torch.allclose(ours, switches, atol=1e-3)  # only unpooling differs
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()) == 0
    assert isinstance(net.pool1, nn.MaxPool2d)  # the model is untouched


def test_project_mean_unpooling_equals_project_without_pooling():
    net = tiny_pooling_net()
    images = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    selections = torch.tensor([[0, 2, 3, 5], [0, 0, 7, 7]])
    assert torch.allclose(
        project_mean_unpooling(net, images, "relu1", selections), project(net, images, "relu1", selections), atol=1e-6
    )


def test_project_mean_unpooling_refuses_training_mode_and_unknown_layers():
    net = tiny_pooling_net()
    images = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        project_mean_unpooling(net, images, "conv9", torch.tensor([[0, 0, 0, 0]]))
    net.train()
    with pytest.raises(ValueError, match="training mode"):
        project_mean_unpooling(net, images, "conv1", torch.tensor([[0, 0, 0, 0]]))


# --------------------------------------------------------------------------------------------
# Tiny grids
# --------------------------------------------------------------------------------------------


def test_tiny_grids_figure_writes_every_number_and_marks_the_switches():
    relu_map = torch.tensor([[1.0, 5.0, 0.0, 2.0], [0.0, 3.0, 0.0, 7.0], [4.0, 0.0, 6.0, 0.0], [0.0, 0.0, 0.0, 1.5]])
    pooled, switches = F.max_pool2d(relu_map[None, None], 3, stride=2, padding=1, return_indices=True)
    figure = figures.tiny_grids_figure(
        [relu_map, pooled[0, 0]], ["relu", "pooled"], switches=[(1, 0, switches[0, 0])], title="switches"
    )
    assert len(figure.axes) == 2
    relu_axis, pooled_axis = figure.axes
    texts = [text.get_text() for text in relu_axis.texts]
    assert all(value in texts for value in ["1", "5", "3", "7", "4", "6", "1.50"])
    # by hand: window a -> 5 at (0, 1), b -> 7 at (1, 3), c -> 4 at (2, 0), d -> 7 at (1, 3) (shared with b)
    assert [t.get_text() for t in pooled_axis.texts if t.get_text() in "abcd"] == ["a", "b", "c", "d"]
    circles = [patch for patch in relu_axis.patches if isinstance(patch, Circle)]
    assert sorted(circle.center for circle in circles) == [(0, 2), (1, 0), (3, 1)]  # (column, row)
    assert "b,d" in texts


def test_tiny_grids_figure_refuses_bad_input():
    with pytest.raises(ValueError, match="one title per grid"):
        figures.tiny_grids_figure([torch.zeros(2, 2)], ["a", "b"])
    with pytest.raises(ValueError, match="must be 2-D"):
        figures.tiny_grids_figure([torch.zeros(1, 2, 2)], ["a"])
    with pytest.raises(ValueError, match="must lie inside the input grid"):
        figures.tiny_grids_figure(
            [torch.zeros(2, 2), torch.zeros(1, 1)], ["in", "out"], switches=[(1, 0, torch.tensor([[4]]))]
        )


# --------------------------------------------------------------------------------------------
# Choosing feature maps
# --------------------------------------------------------------------------------------------


def test_select_feature_maps_takes_the_strongest_map_of_each_dominant_class_first():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    # channel: mean top value, top images (their classes)
    top = TopK(
        layer="conv5",
        values=torch.tensor([[9.0, 8.0], [7.0, 7.0], [6.0, 5.0], [3.0, 1.0], [2.0, 2.0]]),
        image_indices=torch.tensor([[0, 1], [0, 1], [2, 3], [4, 5], [2, 3]]),  # classes 0, 0, 1, 2, 1
        locations=torch.zeros(5, 2, 2, dtype=torch.long),
    )
    assert select_feature_maps(top, labels, num_maps=3) == [0, 2, 3]  # one per class, strongest first
    assert select_feature_maps(top, labels, num_maps=5) == [0, 2, 3, 1, 4]  # then the strongest others
    assert select_feature_maps(top, labels, num_maps=2) == [0, 2]
    assert select_feature_maps(top, None, num_maps=3) == [0, 1, 2]  # without labels: strongest
    with pytest.raises(ValueError, match="labels must be the"):
        select_feature_maps(top, labels[:3])
    with pytest.raises(ValueError, match="num_maps must be a positive integer"):
        select_feature_maps(top, labels, num_maps=0)


# --------------------------------------------------------------------------------------------
# Pictures as pixels and mosaics (the explorers use them)
def test_mosaic_with_a_border_and_float_tiles_and_its_errors():
    tiles = [np.zeros((2, 3, 3)), np.full((2, 3, 3), 0.5)]
    framed = display.mosaic(tiles, columns=2, gap=1, border=2)
    assert framed.shape == (2 + 4, 2 * 3 + 1 + 4, 3) and framed.dtype == np.float64
    assert (framed[2:4, 2:5] == 0).all() and (framed[2:4, 6:9] == 0.5).all() and (framed[:2] == 1).all()
    with pytest.raises(ValueError, match="at least one tile"):
        display.mosaic([], columns=2)
    with pytest.raises(ValueError, match="tiles must match"):
        display.mosaic([np.zeros((2, 2, 3)), np.zeros((3, 2, 3))], columns=2)


def test_to_pixels_repeats_each_pixel_and_rounds_to_uint8():
    picture = torch.tensor([[[0.0, 1.0]], [[0.5, 0.2]], [[1.5, -1.0]]])  # (3, 1, 2)
    pixels = display.to_pixels(picture, 3)
    assert pixels.shape == (3, 6, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0].tolist() == [0, 128, 255]  # 0.5 -> 127.5 rounds to 128, 1.5 clipped
    assert pixels[2, 5].tolist() == [255, 51, 0]  # -1 clipped to 0
    assert (pixels[:, :3] == pixels[0, 0]).all()


def test_mosaic_places_cells_row_by_row_with_white_gaps():
    cells = [torch.full((3, 2, 2), value) for value in (0.0, 0.2, 0.4, 0.6, 0.8)]
    mosaic = display.mosaic([display.to_pixels(cell, 2) for cell in cells], columns=2, gap=1)
    assert mosaic.shape == (3 * 4 + 2, 2 * 4 + 1, 3)
    assert (mosaic[0:4, 5:9] == 51).all()  # cell 1: row 0, column 1
    assert (mosaic[10:14, 0:4] == 204).all()  # cell 4: row 2, column 0
    assert (mosaic[4, :] == 255).all() and (mosaic[:, 4] == 255).all()  # gaps
    assert (mosaic[10:14, 5:9] == 255).all()  # the missing sixth cell stays white


def test_display_scale_is_a_whole_factor_near_the_target():
    assert display.display_scale(64) == 3 and display.display_scale(32) == 6
    assert display.display_scale(500) == 1
