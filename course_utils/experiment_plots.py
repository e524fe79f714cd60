"""Figures and small tables for the experiment notebooks (04 invariance to 08 transfer).

Every figure function returns a matplotlib ``Figure`` (it does not call ``show``), with a title
and axis labels, like :mod:`course_utils.viz`.

* :func:`grouped_bars`: bars of mean +- std for several series over shared categories
  (Table 1's Delta per occlusion and layer, Table 3's train and val error per variant).
* :func:`mean_std_lines` (with :func:`course_utils.stats.group_mean_std`): mean and sample std of a value over repeated
  records (seeds), and the curves ``x -> mean +- std`` per group (few-shot accuracy per method).
* :func:`filter_mosaic` / :func:`first_layer_figure`: a conv layer's filters on the layer's
  common contrast scale and their mean power spectrum with the stride's Nyquist band (Fig 6).
* :func:`invariance_figure`: Fig 5 for one transformation (examples, feature distances at
  layers 1 and 7, P(true class), most probable class), notebook 04.
* :func:`occlusion_figure`: Fig 7's five panels for one image, notebook 05.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from torch import nn

from .architecture import first_layer_report
from .data import ImageTensorDataset
from .invariance import InvarianceCurves, transform_images
from .layers import get_layer
from .occlusion import OcclusionResult
from .stats import MeanStd, group_mean_std
from .viz import normalize_projection, to_display

__all__ = [
    "grouped_bars",
    "mean_std_lines",
    "filter_mosaic",
    "first_layer_figure",
    "invariance_figure",
    "occlusion_figure",
]


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[MeanStd]],
    ylabel: str,
    title: str,
    reference: Mapping[str, Sequence[float | None]] | None = None,
    scale: float = 1.0,
) -> Figure:
    """Grouped bar chart: one group per category, one bar per series, error bars of one std.

    Args:
        categories: the ``K`` group labels along the x axis.
        series: ``{label: K summaries}`` (:class:`~course_utils.stats.MeanStd`; one value: no
            error bar).
        ylabel, title: axis label and figure title.
        reference: optional ``{label: values}`` of length ``K`` drawn as black ticks over the
            groups (e.g. the paper's numbers, already in the plotted units); ``None`` entries
            are skipped.
        scale: multiplies means and stds (100 plots fractions as percent).
    """
    if not categories or not series:
        raise ValueError("grouped_bars needs at least one category and one series")
    count = len(categories)
    for label, summaries in series.items():
        if len(summaries) != count:
            raise ValueError(f"series {label!r} must have {count} summaries (one per category), got {len(summaries)}")
    for label, values in (reference or {}).items():
        if len(values) != count:
            raise ValueError(f"reference {label!r} must have {count} values (one per category), got {len(values)}")
    figure, axis = plt.subplots(figsize=(max(6.0, 1.0 + count * (0.5 + 0.35 * len(series))) + 2.5, 4.2))
    width = 0.8 / len(series)
    positions = np.arange(count)
    for index, (label, summaries) in enumerate(series.items()):
        means = [scale * summary.mean for summary in summaries]
        errors = [0.0 if summary.std is None else scale * summary.std for summary in summaries]
        axis.bar(positions + (index - (len(series) - 1) / 2) * width, means, width, yerr=errors, capsize=3, label=label)
    markers = ("_", "x", "+", "1")
    for index, (label, values) in enumerate((reference or {}).items()):
        shown = [(position, value) for position, value in zip(positions, values) if value is not None]
        axis.scatter(
            [p for p, _ in shown],
            [v for _, v in shown],
            marker=markers[index % len(markers)],
            s=400 if markers[index % len(markers)] == "_" else 60,
            color="black",
            zorder=3,
            label=label,
        )
    axis.set_xticks(positions, list(categories), rotation=20 if count > 4 else 0, ha="right" if count > 4 else "center")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def mean_std_lines(
    records: Sequence[dict[str, Any]],
    x: str,
    y: str,
    group: str,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> Figure:
    """One line per ``record[group]``: the mean of ``record[y]`` at each ``record[x]``, shaded +- one std."""
    table = group_mean_std(records, (group, x), y)
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name in dict.fromkeys(key[0] for key in table):
        points = sorted((key[1], summary.mean, summary.std) for key, summary in table.items() if key[0] == name)
        xs = np.array([p[0] for p in points], dtype=float)
        means = np.array([p[1] for p in points])
        stds = np.array([0.0 if p[2] is None else p[2] for p in points])
        (line,) = axis.plot(xs, means, "-o", label=str(name))
        axis.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2)
    if log_x:
        axis.set_xscale("log")
        values = sorted({key[1] for key in table})
        axis.set_xticks(values, [str(v) for v in values])
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def filter_mosaic(weight: torch.Tensor, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Conv filters ``(C_out, C_in, k, k)`` (``C_in`` 1 or 3) tiled into one ``(H, W, 3)`` image in [0, 1].

    All filters share one contrast scale, ``0.5 + 0.5 * w / max|w|`` over the whole layer, so a
    weak (dead) filter shows as a flat grey square, as in the paper's Fig 6. Tiles are laid out
    row by row, ``columns`` per row (default: about square), separated and framed by ``pad``
    white pixels: ``H = rows * (k + pad) + pad``, ``W = columns * (k + pad) + pad``.
    """
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(
            f"weight must have shape (C_out, C_in, k, k) with C_in 1 (grey) or 3 (RGB), got "
            f"{tuple(weight.shape)}; pass the first conv layer's weight, e.g. model.conv1.weight"
        )
    if pad < 0:
        raise ValueError(f"pad must be >= 0 pixels, got {pad}")
    count, _, height, width = weight.shape
    columns = columns or math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    rows = math.ceil(count / columns)
    values = weight.detach().float().cpu()
    largest = values.abs().max().item()
    scaled = (0.5 + 0.5 * values / (largest if largest > 0 else 1.0)).expand(-1, 3, -1, -1)
    mosaic = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, 3))
    for index, tile in enumerate(scaled.permute(0, 2, 3, 1).numpy()):
        top = pad + (index // columns) * (height + pad)
        left = pad + (index % columns) * (width + pad)
        mosaic[top : top + height, left : left + width] = tile
    return mosaic


def first_layer_figure(
    models: dict[str, nn.Module],
    threshold: float = 0.1,
    layer: str = "conv1",
    fft_size: int = 64,
) -> Figure:
    """Fig 6 for several models: their ``layer`` filters (top) and mean power spectrum (bottom).

    Top: :func:`filter_mosaic`, titled with kernel, stride, dead-filter fraction and aliased
    energy (:func:`course_utils.architecture.first_layer_report` with ``threshold``). Bottom:
    ``log10`` of the filters' power spectrum (``fft_size``-point DFT, summed over input
    channels, averaged over filters, zero frequency in the centre) with the square
    ``|f| <= 1 / (2 * stride)``: energy outside it aliases when the layer subsamples.
    """
    if not models:
        raise ValueError("give at least one model, e.g. {'7x7 stride 2': model}")
    figure, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models), 9), squeeze=False)
    for column, (name, model) in enumerate(models.items()):
        conv = get_layer(model, layer)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"layer {layer!r} of {name!r} is a {type(conv).__name__}, not a Conv2d")
        report = first_layer_report(model, threshold, layer)
        mosaic_axis, spectrum_axis = axes[0, column], axes[1, column]
        mosaic_axis.imshow(filter_mosaic(conv.weight), interpolation="nearest")
        mosaic_axis.set_title(
            f"{name}\n{report['filters']} filters {report['kernel']}x{report['kernel']}, "
            f"stride {report['stride']}\ndead: {report['dead_fraction']:.0%}, "
            f"aliased energy: {report['aliased_energy']:.0%}",
            fontsize=10,
        )
        mosaic_axis.set_xticks([]), mosaic_axis.set_yticks([])
        weight = conv.weight.detach().float()
        power = torch.fft.fft2(weight, s=(fft_size, fft_size)).abs().pow(2).sum(dim=1).mean(dim=0)
        frequencies = torch.fft.fftshift(torch.fft.fftfreq(fft_size)).numpy()
        step = frequencies[1] - frequencies[0]
        low, high = frequencies[0] - step / 2, frequencies[-1] + step / 2
        spectrum_axis.imshow(
            torch.fft.fftshift(power).clamp_min(1e-12).log10().numpy(),
            cmap="magma",
            origin="lower",
            extent=(low, high, low, high),
        )
        nyquist = 1.0 / (2 * report["stride"])
        spectrum_axis.add_patch(
            Rectangle(
                (-nyquist, -nyquist),
                2 * nyquist,
                2 * nyquist,
                fill=False,
                edgecolor="cyan",
                linewidth=2,
                label=f"Nyquist of stride {report['stride']}",
            )
        )
        spectrum_axis.set(
            xlabel="horizontal frequency (cycles/pixel)",
            ylabel="vertical frequency (cycles/pixel)",
            title="log10 mean power spectrum of the filters",
        )
        spectrum_axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------
# Fig 5 (invariance, notebook 04) and Fig 7 (occlusion, notebook 05)
# --------------------------------------------------------------------------------------
_AMOUNT_AXIS_LABELS = {
    "translate": "vertical shift (pixels, + = down)",
    "scale": "scale factor (> 1 enlarges)",
    "rotate": "rotation (degrees, counter-clockwise)",
}
_TRANSFORMATION_NAMES = {"translate": "vertical translation", "scale": "scaling", "rotate": "rotation"}


def _amount_text(kind: str, amount: float) -> str:
    if kind == "translate":
        return f"{amount:+g} px"
    return f"x{amount:g}" if kind == "scale" else f"{amount:g}°"


def _layer_title(name: str) -> str:
    """``"relu7"`` -> ``"layer 7 (relu7)"``; names without a number stay as they are."""
    number = re.search(r"\d+", name)
    return f"layer {number.group()} ({name})" if number else name


def _transformed_mosaic(
    images: torch.Tensor, kind: str, amounts: Sequence[float], dataset: ImageTensorDataset, gap: int
) -> np.ndarray:
    """``(N, 3, H, W)`` normalized images, each transformed by each amount, tiled into one
    ``(N * (H + gap) - gap, A * (W + gap) - gap, 3)`` picture in [0, 1], white gutters."""
    count, _, height, width = images.shape
    mosaic = np.ones((count * (height + gap) - gap, len(amounts) * (width + gap) - gap, 3))
    for column, amount in enumerate(amounts):
        shown = dataset.denormalize(transform_images(images, kind, amount)).permute(0, 2, 3, 1).cpu().numpy()
        for row, picture in enumerate(shown):
            top, left = row * (height + gap), column * (width + gap)
            mosaic[top : top + height, left : left + width] = picture
    return mosaic


def invariance_figure(
    curves: InvarianceCurves,
    images: torch.Tensor,
    dataset: ImageTensorDataset,
    example_amounts: Sequence[float],
    rows: Sequence[int] | None = None,
    gap: int = 2,
) -> Figure:
    """Fig 5 for one transformation; one colour per image throughout.

    Left, over the full height: (a) the images (rows) transformed by ``example_amounts``
    (columns). Right, a grid of curves against the amount: per layer of ``curves`` the
    relative distance ``||f(T(x)) - f(x)|| / ||f(x)||`` (these panels share their y axis), then
    P(true class) and the most probable class (only the classes that occur get a row; lines of
    different images are offset a little vertically so that they do not hide each other).

    Args:
        curves: :func:`course_utils.invariance.invariance_curves` measured on ``images``.
        images: ``(N, 3, H, W)`` the normalized images of ``curves``.
        dataset: its ``class_names`` label the classes, its ``denormalize`` shows the images.
        example_amounts: the amounts shown in panel (a).
        rows: which of the ``N`` images to draw, in this order (default: all).
        gap: white pixels between the pictures of panel (a).
    """
    count = curves.probabilities.shape[0]
    if images.ndim != 4 or images.shape[0] != count:
        raise ValueError(f"images must be the (N, 3, H, W) batch of the curves, N = {count}; got {tuple(images.shape)}")
    if len(example_amounts) == 0:
        raise ValueError(f"give at least one example amount, e.g. {curves.amounts[[0, -1]].tolist()}")
    shown = list(range(count)) if rows is None else [int(row) for row in rows]
    if not shown or not all(0 <= row < count for row in shown):
        raise ValueError(f"rows must pick at least one of the curves' images 0..{count - 1}, got {rows}")
    amounts = curves.amounts.numpy()
    colours = [plt.get_cmap("tab10")(position % 10) for position in range(len(shown))]
    names = [dataset.class_names[int(curves.target[row])] for row in shown]
    panels = len(curves.layers) + 2
    grid_columns = math.ceil(panels / 2)
    # The figure is made outside rc_context: pyplot's first figure switches on the inline
    # backend's interactive mode, which rc_context would undo on exit (no later figure shown).
    figure = plt.figure(figsize=(6.5 + 5.0 * grid_columns, 9.5), layout="constrained")
    with plt.rc_context({"font.size": 13}):
        grid = figure.add_gridspec(2, grid_columns + 1, width_ratios=[1.25] + [1.0] * grid_columns)
        example_axis = figure.add_subplot(grid[:, 0])
        height, width = images.shape[-2:]
        example_axis.imshow(_transformed_mosaic(images[shown], curves.kind, example_amounts, dataset, gap))
        example_axis.set_xticks(
            [column * (width + gap) + (width - 1) / 2 for column in range(len(example_amounts))],
            [_amount_text(curves.kind, amount) for amount in example_amounts],
        )
        example_axis.set_yticks([position * (height + gap) + (height - 1) / 2 for position in range(len(shown))], names)
        for label, colour in zip(example_axis.get_yticklabels(), colours):
            label.set_color(colour)
        example_axis.set_title(f"(a) {_TRANSFORMATION_NAMES[curves.kind]}: examples")
        axes = [figure.add_subplot(grid[index // grid_columns, 1 + index % grid_columns]) for index in range(panels)]
        distance_axes, probability_axis, top_axis = axes[:-2], axes[-2], axes[-1]

        for axis, layer in zip(distance_axes, curves.layers):
            for colour, row in zip(colours, shown):
                axis.plot(amounts, curves.relative_distances[layer][row].numpy(), "-o", ms=3, color=colour)
            axis.set(title=f"{_layer_title(layer)}", ylabel=r"relative distance $\|f(Tx) - f(x)\| \,/\, \|f(x)\|$")
        for axis in distance_axes[1:]:
            axis.sharey(distance_axes[0])
        distance_axes[0].set_ylim(bottom=0)

        for colour, name, row in zip(colours, names, shown):
            probability_axis.plot(amounts, curves.probabilities[row].numpy(), "-o", ms=3, color=colour, label=name)
        probability_axis.set(title="P(true class)", ylabel="probability", ylim=(-0.02, 1.02))

        # Only the classes that occur (true classes of the shown images and their most probable
        # classes), in class order, one row each: with many classes the axis stays readable.
        present = sorted(
            {int(label) for row in shown for label in curves.top_classes[row].tolist()}
            | {int(curves.target[row]) for row in shown}
        )
        position = {label: index for index, label in enumerate(present)}
        offsets = (np.arange(len(shown)) - (len(shown) - 1) / 2) * min(0.12, 0.6 / len(shown))
        for colour, offset, row in zip(colours, offsets, shown):
            rows_of_classes = np.array([position[int(label)] for label in curves.top_classes[row].tolist()])
            top_axis.plot(amounts, rows_of_classes + offset, "-o", ms=3, drawstyle="steps-mid", color=colour)
        top_axis.set_yticks(range(len(present)), [dataset.class_names[label] for label in present])
        top_axis.set(title="most probable class", ylim=(-0.6, len(present) - 0.4))

        for axis in axes:
            axis.set_xlabel(_AMOUNT_AXIS_LABELS[curves.kind])
            axis.grid(alpha=0.3)
            if curves.kind == "rotate":
                axis.set_xticks(np.arange(0, amounts.max() + 1, 90))
        figure.legend(loc="outside lower center", ncols=min(len(shown), 6), title="image (true class)")
        figure.suptitle(f"Invariance to {_TRANSFORMATION_NAMES[curves.kind]} (Zeiler & Fergus, Fig. 5)", fontsize=16)
    return figure


def _class_colours(
    classes_by_frequency: Sequence[int], num_classes: int
) -> dict[int, tuple[float, float, float, float]]:
    """Colours for the classes of a top-class map, most frequent first.

    With at most 10 (20) classes in the model, tab10 (tab20) by class index, so a class keeps
    its colour from figure to figure; otherwise the 19 most frequent classes get tab20 colours
    by rank and the others are left out (they are drawn grey, as "other classes").
    """
    if num_classes <= 20:
        palette = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
        return {int(index): tuple(palette(int(index))) for index in classes_by_frequency}  # type: ignore[misc]
    palette = plt.get_cmap("tab20")
    return {int(index): tuple(palette(rank)) for rank, index in enumerate(classes_by_frequency[:19])}  # type: ignore[misc]


def occlusion_figure(
    result: OcclusionResult,
    image: torch.Tensor,
    projection: torch.Tensor,
    dataset: ImageTensorDataset,
    object_mask: torch.Tensor | None = None,
) -> Figure:
    """Fig 7 for one image: five panels (two rows), maps drawn at the occluder centres.

    (a) the image, with the occluder position that lowers P(target class) most; (b) change,
    from the unoccluded image, of the summed activation of ``result``'s feature map (diverging
    colours, white = unchanged); (c) ``projection`` of that feature map to pixel space, shown
    with :func:`course_utils.viz.normalize_projection`; (d) P(target class) (viridis, 0 to 1);
    (e) the most probable class (categorical colours, legend). With ``object_mask`` the
    object's outline is drawn over (b), (d) and (e).

    Args:
        result: :func:`course_utils.occlusion.occlusion_map` with a ``layer`` (panel b).
        image: ``(3, H, W)`` the normalized image of ``result``.
        projection: ``(3, H, W)`` signed deconvnet projection, e.g.
            ``project_activation(model, image, result.layer, result.channel)``.
        dataset: its ``class_names`` and ``denormalize``.
        object_mask: ``(H, W)`` bool, the object's pixels, or ``None``.
    """
    height, width = result.image_size
    if image.shape != (3, height, width):
        raise ValueError(f"image must be the (3, {height}, {width}) image of the result, got {tuple(image.shape)}")
    if projection.shape != image.shape:
        raise ValueError(f"projection must have the image's shape {tuple(image.shape)}, got {tuple(projection.shape)}")
    if result.activation is None or result.unoccluded_activation is None or result.layer is None:
        raise ValueError(
            "result has no feature-map activation (panel b); run occlusion_map with a layer, e.g. layer='relu5'"
        )
    if object_mask is not None and tuple(object_mask.shape) != (height, width):
        raise ValueError(f"object_mask must have shape ({height}, {width}), got {tuple(object_mask.shape)}")
    names = dataset.class_names
    target = names[result.target]
    half, step = (result.window - 1) / 2, result.stride / 2
    extent = (
        float(result.cols[0]) + half - step,
        float(result.cols[-1]) + half + step,
        float(result.rows[-1]) + half + step,
        float(result.rows[0]) + half - step,
    )
    worst_row, worst_col = divmod(int(result.probability.argmin()), result.probability.shape[1])

    figure = plt.figure(figsize=(16, 10.5), layout="constrained")  # outside rc_context: see invariance_figure
    with plt.rc_context({"font.size": 13}):
        axes = figure.subplots(2, 3)
        (image_axis, activation_axis, projection_axis), (probability_axis, class_axis, legend_axis) = axes
        image_axis.imshow(to_display(dataset.denormalize(image)))
        corner = (float(result.cols[worst_col]) - 0.5, float(result.rows[worst_row]) - 0.5)
        for colour, line_width in (("white", 4.0), ("black", 2.0)):
            image_axis.add_patch(
                Rectangle(corner, result.window, result.window, fill=False, edgecolor=colour, linewidth=line_width)
            )
        image_axis.set_title(
            f"(a) {target}; square: the {result.window}x{result.window} px\noccluder position that lowers P most"
        )

        change = (result.activation - result.unoccluded_activation).numpy()
        limit = float(np.abs(change).max()) or 1.0
        shown = activation_axis.imshow(change, cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent)
        figure.colorbar(
            shown, ax=activation_axis, shrink=0.85, label=f"change from unoccluded ({result.unoccluded_activation:.3g})"
        )
        activation_axis.set_title(f"(b) {_layer_title(result.layer)}, map {result.channel}:\nsummed activation")

        projection_axis.imshow(to_display(normalize_projection(projection)))
        projection_axis.set_title(f"(c) map {result.channel}'s strongest activation,\nprojected to pixels")

        clean = float(result.unoccluded_probabilities[result.target])
        shown = probability_axis.imshow(result.probability.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, extent=extent)
        figure.colorbar(shown, ax=probability_axis, shrink=0.85, label=f"P({target})")
        probability_axis.set_title(f"(d) P({target})\n(unoccluded: {clean:.2f})")

        top = result.top_class.numpy()
        indices, counts = np.unique(top, return_counts=True)
        present = [int(index) for index in indices[np.argsort(-counts, kind="stable")]]
        colours = _class_colours(present, len(names))
        other = (0.6, 0.6, 0.6, 1.0)
        class_axis.imshow(
            np.array([[colours.get(int(index), other)[:3] for index in row] for row in top]), extent=extent
        )
        class_axis.set_title("(e) most probable class")
        handles = [
            Patch(color=colours[index], label=names[index] + (" (true)" if index == result.target else ""))
            for index in present
            if index in colours
        ]
        if len(colours) < len(present):
            handles.append(Patch(color=other, label="other classes"))
        legend_axis.legend(handles=handles, loc="center left", title="(e) most probable class")
        legend_axis.set_axis_off()

        if object_mask is not None:
            for axis, colour in ((activation_axis, "black"), (probability_axis, "white"), (class_axis, "black")):
                axis.contour(object_mask.float().numpy(), levels=[0.5], colors=colour, linewidths=1.5)
        for axis in (image_axis, activation_axis, projection_axis, probability_axis, class_axis):
            axis.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
            axis.set_xticks([]), axis.set_yticks([])
        for axis in (activation_axis, probability_axis, class_axis):
            axis.set_xlabel("position of the occluder's centre")
        outlined = "; object outlined" if object_mask is not None else ""
        figure.suptitle(f"Occlusion sensitivity (Zeiler & Fergus, Fig. 7){outlined}", fontsize=16)
    return figure
