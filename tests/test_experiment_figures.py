"""Figures and mean +- std tables of the analysis notebooks (06-08)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from course_utils.figures import (
    filter_mosaic,
    first_layer_figure,
    grouped_bars,
    mean_std_lines,
)
from course_utils.models import ZFNet, ZFNetConfig
from course_utils.stats import MeanStd, group_mean_std

SMALL = dict(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8))


def test_filter_mosaic_places_each_filter_on_the_common_scale():
    weight = torch.zeros(3, 3, 2, 2)
    weight[0, 0] = torch.tensor([[2.0, -2.0], [0.0, 1.0]])  # the layer's largest |w| is 2
    weight[2, 2, 1, 1] = -1.0
    mosaic = filter_mosaic(weight, columns=2, pad=1)
    assert mosaic.shape == (2 * (2 + 1) + 1, 2 * (2 + 1) + 1, 3)
    # filter 0 at rows 1-2, columns 1-2; channel 0 is red: 0.5 + 0.5 * w / 2
    np.testing.assert_allclose(mosaic[1:3, 1:3, 0], [[1.0, 0.0], [0.5, 0.75]])
    np.testing.assert_allclose(mosaic[1:3, 1:3, 1:], 0.5)
    np.testing.assert_allclose(mosaic[1:3, 4:6], 0.5)  # filter 1 is all zero: flat grey
    np.testing.assert_allclose(mosaic[4:6, 1:3, 2], [[0.5, 0.5], [0.5, 0.25]])  # filter 2, blue channel
    np.testing.assert_allclose(mosaic[4:6, 4:6], 1.0)  # no fourth filter: background
    assert (mosaic[0] == 1.0).all() and (mosaic[:, 3] == 1.0).all()  # frame and gutter


def test_filter_mosaic_defaults_grey_filters_and_bad_input():
    mosaic = filter_mosaic(torch.ones(5, 1, 3, 3), pad=0)  # default columns: ceil(sqrt(5)) = 3, 2 rows
    assert mosaic.shape == (6, 9, 3)
    np.testing.assert_allclose(mosaic[:3, :9], 1.0)  # grey filters copied to R, G and B, all at +max
    zeros = filter_mosaic(torch.zeros(2, 3, 3, 3), columns=2)  # all-zero layer: grey, no division by zero
    np.testing.assert_allclose(zeros[1:4, 1:4], 0.5)
    np.testing.assert_allclose(zeros[1:4, 5:8], 0.5)
    assert zeros.shape == (5, 9, 3) and (zeros[:, 4] == 1.0).all()
    with pytest.raises(ValueError, match=r"\(C_out, C_in, k, k\)"):
        filter_mosaic(torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="C_in 1"):
        filter_mosaic(torch.zeros(4, 2, 3, 3))
    with pytest.raises(ValueError, match="pad"):
        filter_mosaic(torch.zeros(4, 3, 3, 3), pad=-1)


def test_grouped_bars_draws_the_given_means_stds_and_reference():
    train = [MeanStd.of([0.08, 0.12]), MeanStd.of([0.2]), MeanStd.of([0.27, 0.33])]  # stds 0.028, none, 0.042
    val = [MeanStd.of([value]) for value in (0.4, 0.5, 0.6)]
    figure = grouped_bars(
        ["a", "b", "c"],
        {"train": train, "val": val},
        ylabel="error",
        title="t",
        reference={"paper": [7.0, None, 9.0]},
        scale=10.0,
    )
    axis = figure.axes[0]
    heights = [patch.get_height() for patch in axis.patches]
    np.testing.assert_allclose(heights, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    centres = [patch.get_x() + patch.get_width() / 2 for patch in axis.patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 1.8, 0.2, 1.2, 2.2])
    error_lines = [collection for collection in axis.collections if hasattr(collection, "get_segments")]
    segments = error_lines[0].get_segments()  # the train series' error bars: mean +- std, scaled
    spread = [10 * np.sqrt(0.0008), 0.0, 10 * np.sqrt(0.0018)]
    np.testing.assert_allclose(
        [s[:, 1] for s in segments], [[m - d, m + d] for m, d in zip([1.0, 2.0, 3.0], spread)], atol=1e-12
    )
    reference = [c for c in axis.collections if c.get_label() == "paper"][0]
    np.testing.assert_allclose(reference.get_offsets(), [[0.0, 7.0], [2.0, 9.0]])
    assert axis.get_ylabel() == "error" and axis.get_title() == "t"
    assert [text.get_text() for text in axis.get_xticklabels()] == ["a", "b", "c"]


def test_grouped_bars_rejects_mismatched_lengths():
    one, two = MeanStd.of([1.0]), MeanStd.of([2.0])
    with pytest.raises(ValueError, match="series 'x' must have 2 summaries"):
        grouped_bars(["a", "b"], {"x": [one]}, "y", "t")
    with pytest.raises(ValueError, match="reference 'paper' must have 2 values"):
        grouped_bars(["a", "b"], {"x": [one, two]}, "y", "t", reference={"paper": [1.0]})
    with pytest.raises(ValueError, match="at least one"):
        grouped_bars([], {}, "y", "t")


RECORDS = [
    {"method": "m", "shots": 1, "acc": 0.2},
    {"method": "m", "shots": 1, "acc": 0.4},
    {"method": "m", "shots": 5, "acc": 0.5},
    {"method": "n", "shots": 1, "acc": 0.1},
    {"method": "n", "shots": 1, "acc": 0.1},
    {"method": "n", "shots": 1, "acc": 0.4},
]


def test_group_mean_std_by_hand():
    table = group_mean_std(RECORDS, ("method", "shots"), "acc")
    assert list(table) == [("m", 1), ("m", 5), ("n", 1)]
    summary = table[("m", 1)]
    assert (summary.mean, summary.count) == (pytest.approx(0.3), 2) and summary.std == pytest.approx(np.sqrt(0.02))
    assert (table[("m", 5)].mean, table[("m", 5)].std, table[("m", 5)].count) == (0.5, None, 1)
    assert table[("n", 1)].mean == pytest.approx(0.2) and table[("n", 1)].std == pytest.approx(np.sqrt(0.03))
    assert table[("m", 1)].format(2) == "0.30 +- 0.14" and table[("m", 5)].format(1, scale=100) == "50.0"
    with pytest.raises(ValueError, match=r"has no \['seed'\]"):
        group_mean_std(RECORDS, ("seed",), "acc")
    with pytest.raises(ValueError, match="at least one value"):
        MeanStd.of([])


def test_mean_std_lines_plots_means_with_a_std_band():
    figure = mean_std_lines(
        RECORDS, x="shots", y="acc", group="method", xlabel="shots", ylabel="accuracy", title="t", log_x=True
    )
    axis = figure.axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    np.testing.assert_allclose(lines["m"].get_xdata(), [1, 5])
    np.testing.assert_allclose(lines["m"].get_ydata(), [0.3, 0.5])
    np.testing.assert_allclose(lines["n"].get_ydata(), [0.2])
    band = axis.collections[0].get_paths()[0].vertices[:, 1]  # the m band spans mean +- std
    assert band.min() == pytest.approx(0.3 - np.sqrt(0.02)) and band.max() == pytest.approx(0.5)
    assert axis.get_xscale() == "log"


def test_first_layer_figure_shows_filters_and_the_nyquist_band_of_each_stride():
    torch.manual_seed(0)
    models = {"small": ZFNet(ZFNetConfig(**SMALL)), "big": ZFNet(ZFNetConfig(**SMALL, conv1_kernel=11, conv1_stride=4))}
    with torch.no_grad():
        models["small"].conv1.weight[3].zero_()  # 1 of 4 filters dead
    figure = first_layer_figure(models)
    mosaics, spectra = figure.axes[:2], figure.axes[2:]  # row 1: filters, row 2: spectra
    assert "7x7, stride 2" in mosaics[0].get_title() and "dead: 25%" in mosaics[0].get_title()
    assert "11x11, stride 4" in mosaics[1].get_title() and "dead: 0%" in mosaics[1].get_title()
    np.testing.assert_allclose(mosaics[0].get_images()[0].get_array(), filter_mosaic(models["small"].conv1.weight))
    for axis, stride in zip(spectra, (2, 4)):
        box = [patch for patch in axis.patches if isinstance(patch, Rectangle)][0]
        assert box.get_xy() == (-1 / (2 * stride), -1 / (2 * stride)) and box.get_width() == 1 / stride
    weight = models["big"].conv1.weight.detach()
    power = torch.fft.fft2(weight, s=(64, 64)).abs().pow(2).sum(1).mean(0)
    shown = spectra[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown[32, 32], np.log10(power[0, 0].item()), rtol=1e-5)  # zero frequency centred


def test_first_layer_figure_rejects_a_non_conv_layer_and_no_models():
    with pytest.raises(ValueError, match="not a Conv2d"):
        first_layer_figure({"m": ZFNet(ZFNetConfig(**SMALL))}, layer="relu1")
    with pytest.raises(ValueError, match="at least one model"):
        first_layer_figure({})


# --------------------------------------------------------------------------------------
# Fig 5 (invariance_figure) and Fig 7 (occlusion_figure)
# --------------------------------------------------------------------------------------
CLASS_NAMES = [f"class {index}" for index in range(10)]


def _tiny_model_and_data(count: int = 3, size: int = 32):
    from course_utils.data import ImageTensorDataset

    torch.manual_seed(0)
    model = ZFNet(ZFNetConfig(**SMALL, image_size=size)).eval()
    generator = torch.Generator().manual_seed(1)
    pictures = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    dataset = ImageTensorDataset(pictures, torch.arange(count) % 10, CLASS_NAMES, (0.5,) * 3, (0.25,) * 3)
    return model, dataset, dataset.normalize(pictures)


def test_invariance_figure_draws_the_examples_and_every_curve():
    from course_utils.figures import invariance_figure
    from course_utils.invariance import invariance_curves, transform_images

    model, dataset, images = _tiny_model_and_data()
    curves = invariance_curves(model, images, "translate", [-2, 0, 2], target=dataset.labels)
    figure = invariance_figure(curves, images, dataset, example_amounts=[-2, 0], gap=2)
    examples, layer1, layer7, probability, top = figure.axes

    mosaic = examples.get_images()[0].get_array()
    assert mosaic.shape == (3 * 34 - 2, 2 * 34 - 2, 3)
    shifted = dataset.denormalize(transform_images(images, "translate", -2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(mosaic[34:66, 0:32], shifted[1])  # image 1 (row 1) shifted by -2 (column 0)
    np.testing.assert_allclose(mosaic[34:66, 34:66], dataset.denormalize(images[1]).permute(1, 2, 0).numpy())
    np.testing.assert_allclose(mosaic[32:34], 1.0)  # white gutter between rows
    assert [label.get_text() for label in examples.get_xticklabels()] == ["-2 px", "+0 px"]
    assert [label.get_text() for label in examples.get_yticklabels()] == CLASS_NAMES[:3]

    for axis, layer in ((layer1, "relu1"), (layer7, "relu7")):
        assert axis.get_title() == f"layer {layer[-1]} ({layer})"
        for line, expected in zip(axis.get_lines(), curves.relative_distances[layer]):
            np.testing.assert_allclose(line.get_xdata(), [-2, 0, 2])
            np.testing.assert_allclose(line.get_ydata(), expected.numpy())
    assert layer1.get_ylim() == layer7.get_ylim() and layer1.get_ylim()[0] == 0  # one scale for both layers
    for line, expected in zip(probability.get_lines(), curves.probabilities):
        np.testing.assert_allclose(line.get_ydata(), expected.numpy())
    top_lines = top.get_lines()
    present = sorted(set(curves.top_classes.flatten().tolist()) | set(curves.target.tolist()))
    assert [label.get_text() for label in top.get_yticklabels()] == [CLASS_NAMES[label] for label in present]
    rows_of_classes = torch.tensor([[present.index(label) for label in row] for row in curves.top_classes.tolist()])
    offsets = [line.get_ydata()[0] - rows_of_classes[row, 0].item() for row, line in enumerate(top_lines)]
    assert len(set(offsets)) == 3 and max(abs(offset) for offset in offsets) < 0.5  # separated, on their class
    for row, line in enumerate(top_lines):
        np.testing.assert_allclose(line.get_ydata() - offsets[row], rows_of_classes[row].numpy(), atol=1e-12)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == CLASS_NAMES[:3]


def test_invariance_figure_gives_only_the_classes_that_occur_a_row_of_the_top_class_panel():
    from course_utils.figures import invariance_figure
    from course_utils.invariance import InvarianceCurves

    model, dataset, images = _tiny_model_and_data()
    amounts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    distances = {"relu1": torch.ones(3, 3, dtype=torch.float64), "relu7": torch.ones(3, 3, dtype=torch.float64)}
    curves = InvarianceCurves(
        kind="translate",
        amounts=amounts,
        layers=("relu1", "relu7"),
        distances=distances,
        relative_distances=distances,
        probabilities=torch.full((3, 3), 0.5),
        top_classes=torch.tensor([[0, 7, 7], [1, 1, 9], [2, 2, 2]]),
        target=torch.tensor([0, 1, 2]),
        original_probabilities=torch.full((3,), 0.5),
    )
    top = invariance_figure(curves, images, dataset, example_amounts=[0]).axes[-1]
    assert [label.get_text() for label in top.get_yticklabels()] == [
        "class 0",
        "class 1",
        "class 2",
        "class 7",
        "class 9",
    ]
    first = top.get_lines()[0].get_ydata()
    assert np.round(first).tolist() == [0, 3, 3]  # class 0, then class 7 on the fourth row
    assert top.get_ylim() == (-0.6, 4.6)


def test_invariance_figure_rejects_images_of_other_curves_and_no_examples():
    from course_utils.figures import invariance_figure
    from course_utils.invariance import invariance_curves

    model, dataset, images = _tiny_model_and_data()
    curves = invariance_curves(model, images, "rotate", [0, 90])
    with pytest.raises(ValueError, match=r"batch of the curves, N = 3"):
        invariance_figure(curves, images[:2], dataset, [0])
    with pytest.raises(ValueError, match="at least one example amount"):
        invariance_figure(curves, images, dataset, [])
    with pytest.raises(ValueError, match=r"rows must pick at least one of the curves' images 0..2"):
        invariance_figure(curves, images, dataset, [0], rows=[3])
    with pytest.raises(ValueError, match="rows must pick at least one"):
        invariance_figure(curves, images, dataset, [0], rows=[])


def test_invariance_figure_draws_only_the_chosen_rows_in_their_order():
    from course_utils.figures import invariance_figure
    from course_utils.invariance import invariance_curves

    model, dataset, images = _tiny_model_and_data()
    curves = invariance_curves(model, images, "scale", [0.8, 1.0], target=dataset.labels)
    figure = invariance_figure(curves, images, dataset, example_amounts=[1.0], rows=[2, 0], gap=2)
    examples, layer1, _, probability, _ = figure.axes
    mosaic = examples.get_images()[0].get_array()
    assert mosaic.shape == (2 * 34 - 2, 32, 3)
    np.testing.assert_allclose(mosaic[:32], dataset.denormalize(images[2]).permute(1, 2, 0).numpy())
    assert [label.get_text() for label in examples.get_yticklabels()] == [CLASS_NAMES[2], CLASS_NAMES[0]]
    assert [label.get_text() for label in examples.get_xticklabels()] == ["x1"]
    for axis, table in ((layer1, curves.relative_distances["relu1"]), (probability, curves.probabilities)):
        assert len(axis.get_lines()) == 2
        np.testing.assert_allclose(axis.get_lines()[0].get_ydata(), table[2].numpy())
        np.testing.assert_allclose(axis.get_lines()[1].get_ydata(), table[0].numpy())


def test_occlusion_figure_places_each_map_at_the_occluder_centres():
    from course_utils.deconvnet import project_activation
    from course_utils.display import normalize_projection, to_display
    from course_utils.figures import occlusion_figure
    from course_utils.occlusion import occlusion_map

    model, dataset, images = _tiny_model_and_data(count=1)
    image = images[0]
    result = occlusion_map(model, image, window=8, stride=4, target=1, layer="relu5")
    projection = project_activation(model, image, "relu5", result.channel)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[10:20, 12:24] = True
    figure = occlusion_figure(result, image, projection, dataset, object_mask=mask)
    image_axis, activation_axis, projection_axis, probability_axis, class_axis, legend_axis = figure.axes[:6]

    centres = (1.5, 29.5, 29.5, 1.5)  # occluder centres 3.5 .. 27.5 (corners 0 .. 24, +3.5), cells of 4 px
    probability_map = probability_axis.get_images()[0]
    np.testing.assert_allclose(probability_map.get_array(), result.probability.numpy())
    assert tuple(probability_map.get_extent()) == centres
    assert probability_map.get_cmap().name == "viridis" and probability_map.get_clim() == (0.0, 1.0)

    activation_map = activation_axis.get_images()[0]
    change = (result.activation - result.unoccluded_activation).numpy()
    np.testing.assert_allclose(activation_map.get_array(), change)
    low, high = activation_map.get_clim()
    assert activation_map.get_cmap().name == "RdBu_r" and low == -high == -np.abs(change).max()

    np.testing.assert_allclose(
        projection_axis.get_images()[0].get_array(), to_display(normalize_projection(projection))
    )
    worst_row, worst_col = divmod(int(result.probability.argmin()), result.probability.shape[1])
    square = [patch for patch in image_axis.patches if isinstance(patch, Rectangle)][-1]
    assert square.get_xy() == (result.cols[worst_col].item() - 0.5, result.rows[worst_row].item() - 0.5)
    assert square.get_width() == square.get_height() == 8

    palette = plt.get_cmap("tab10")
    top = result.top_class.numpy()
    expected_colours = np.array([[palette(int(index))[:3] for index in row] for row in top])
    np.testing.assert_allclose(class_axis.get_images()[0].get_array(), expected_colours)
    labels = [text.get_text() for text in legend_axis.get_legend().get_texts()]
    assert sorted(labels) == sorted(CLASS_NAMES[index] + (" (true)" if index == 1 else "") for index in np.unique(top))
    for axis in (activation_axis, probability_axis, class_axis):
        assert len(axis.collections) == 1  # the object's outline


def test_occlusion_figure_rejects_mismatched_inputs():
    from course_utils.figures import occlusion_figure
    from course_utils.occlusion import occlusion_map

    model, dataset, images = _tiny_model_and_data(count=1)
    image = images[0]
    result = occlusion_map(model, image, window=8, stride=8, layer="relu5")
    projection = torch.zeros_like(image)
    with pytest.raises(ValueError, match=r"image must be the \(3, 32, 32\) image"):
        occlusion_figure(result, image[:, :16], projection, dataset)
    with pytest.raises(ValueError, match="projection must have the image's shape"):
        occlusion_figure(result, image, projection[0], dataset)
    with pytest.raises(ValueError, match=r"object_mask must have shape \(32, 32\)"):
        occlusion_figure(result, image, projection, dataset, object_mask=torch.zeros(16, 16, dtype=torch.bool))
    without_layer = occlusion_map(model, image, window=8, stride=8, layer=None)
    with pytest.raises(ValueError, match="layer='relu5'"):
        occlusion_figure(without_layer, image, projection, dataset)


def test_class_colours_keep_a_class_colour_or_rank_the_most_frequent():
    from course_utils import figures

    assert figures._class_colours([7, 2], 10) == {7: plt.get_cmap("tab10")(7), 2: plt.get_cmap("tab10")(2)}
    assert figures._class_colours([15], 20) == {15: plt.get_cmap("tab20")(15)}
    many = figures._class_colours(list(range(100, 125)), 1000)  # 25 classes present, most frequent first
    assert list(many) == list(range(100, 119)) and many[100] == plt.get_cmap("tab20")(0)
