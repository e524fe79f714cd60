"""Figures and mean +- std tables of the analysis notebooks (06-08)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from course_utils.experiment_plots import (filter_mosaic, first_layer_figure, grouped_bars, mean_std_lines,
                                           mean_std_table)
from course_utils.models import ZFNet, ZFNetConfig

SMALL = dict(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_filter_mosaic_places_each_filter_on_the_common_scale():
    weight = torch.zeros(3, 3, 2, 2)
    weight[0, 0] = torch.tensor([[2.0, -2.0], [0.0, 1.0]])  # the layer's largest |w| is 2
    weight[2, 2, 1, 1] = -1.0
    mosaic = filter_mosaic(weight, columns=2, pad=1)
    assert mosaic.shape == (2 * (2 + 1) + 1, 2 * (2 + 1) + 1, 3)
    # filter 0 at rows 1-2, columns 1-2; channel 0 is red: 0.5 + 0.5 * w / 2
    np.testing.assert_allclose(mosaic[1:3, 1:3, 0], [[1.0, 0.0], [0.5, 0.75]])
    np.testing.assert_allclose(mosaic[1:3, 1:3, 1:], 0.5)
    np.testing.assert_allclose(mosaic[1:3, 4:6], 0.5)          # filter 1 is all zero: flat grey
    np.testing.assert_allclose(mosaic[4:6, 1:3, 2], [[0.5, 0.5], [0.5, 0.25]])  # filter 2, blue channel
    np.testing.assert_allclose(mosaic[4:6, 4:6], 1.0)          # no fourth filter: background
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
    figure = grouped_bars(["a", "b", "c"], {"train": ([1.0, 2.0, 3.0], [0.1, None, 0.3]),
                                            "val": ([4.0, 5.0, 6.0], None)},
                          ylabel="error", title="t", reference={"paper": [7.0, None, 9.0]})
    axis = figure.axes[0]
    heights = [patch.get_height() for patch in axis.patches]
    assert heights == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    centres = [patch.get_x() + patch.get_width() / 2 for patch in axis.patches]
    np.testing.assert_allclose(centres, [-0.2, 0.8, 1.8, 0.2, 1.2, 2.2])
    error_lines = [collection for collection in axis.collections if hasattr(collection, "get_segments")]
    segments = error_lines[0].get_segments()  # the train series' error bars: mean +- std
    np.testing.assert_allclose([s[:, 1] for s in segments], [[0.9, 1.1], [2.0, 2.0], [2.7, 3.3]])
    reference = [c for c in axis.collections if c.get_label() == "paper"][0]
    np.testing.assert_allclose(reference.get_offsets(), [[0.0, 7.0], [2.0, 9.0]])
    assert axis.get_ylabel() == "error" and axis.get_title() == "t"
    assert [text.get_text() for text in axis.get_xticklabels()] == ["a", "b", "c"]


def test_grouped_bars_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="series 'x' must have 2 means"):
        grouped_bars(["a", "b"], {"x": ([1.0], None)}, "y", "t")
    with pytest.raises(ValueError, match="reference 'paper' must have 2 values"):
        grouped_bars(["a", "b"], {"x": ([1.0, 2.0], None)}, "y", "t", reference={"paper": [1.0]})
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


def test_mean_std_table_by_hand():
    table = mean_std_table(RECORDS, ("method", "shots"), "acc")
    assert list(table) == [("m", 1), ("m", 5), ("n", 1)]
    mean, std, count = table[("m", 1)]
    assert (mean, count) == (pytest.approx(0.3), 2) and std == pytest.approx(np.sqrt(0.02))  # sample std
    assert table[("m", 5)] == (0.5, None, 1)
    assert table[("n", 1)][0] == pytest.approx(0.2) and table[("n", 1)][1] == pytest.approx(np.sqrt(0.03))
    with pytest.raises(ValueError, match=r"has no \['seed'\]"):
        mean_std_table(RECORDS, ("seed",), "acc")


def test_mean_std_lines_plots_means_with_a_std_band():
    figure = mean_std_lines(RECORDS, x="shots", y="acc", group="method", xlabel="shots", ylabel="accuracy",
                            title="t", log_x=True)
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
    models = {"small": ZFNet(ZFNetConfig(**SMALL)),
              "big": ZFNet(ZFNetConfig(**SMALL, conv1_kernel=11, conv1_stride=4))}
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
