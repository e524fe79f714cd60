"""The course's figures, grouped by what they show.

Every function returns a matplotlib ``Figure`` (it does not call ``show``), with a title and
axis labels; images are shown in [0, 1], projections by the one rule of
:mod:`course_utils.display`, signed maps with a diverging colour map centred on zero,
probability maps with ``viridis`` (both print well in greyscale).

* Data and training (notebook 01): :func:`example_grid`, :func:`class_gallery`,
  :func:`training_curves`, :func:`confusion_figure`.
* The deconvnet by hand (02): :func:`tiny_grids_figure` (hand-sized arrays with their numbers,
  switches marked).
* Projections (02, 03): :func:`top9_figure` (Fig 2), :func:`feature_evolution_figure` (Fig 4),
  :func:`compare_projections_figure` (methods side by side), :func:`unit_projection_figure`
  (one unit in its image).
* Invariance (04): :func:`invariance_figure` (Fig 5).
* Occlusion (05): :func:`occlusion_figure` (Fig 7's five panels).
* The first layer (07): :func:`first_layer_figure` (Fig 6: filters and their spectrum).
* Repeated measurements (06-08): :func:`grouped_bars` (mean +- std per category and series) and
  :func:`mean_std_lines` (curves ``x -> mean +- std`` per group).
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
from torch import Tensor, nn

from .activations import TopK, mine_top_activations, receptive_field_box
from .architecture import first_layer_report
from .data import ImageTensorDataset
from .deconvnet import project_activation, project_top_activations
from .display import (
    filter_mosaic,
    image_table,
    mosaic,
    normalize_projection,
    receptive_field_window,
    show_image,
    to_display,
)
from .invariance import AMOUNT_LABELS, InvarianceCurves, transform_images
from .layers import get_layer
from .occlusion import OcclusionResult, occlusion_map
from .progress import progress_bar
from .stats import MeanStd, group_mean_std

__all__ = [
    "class_gallery",
    "compare_projections_figure",
    "confusion_figure",
    "example_grid",
    "feature_evolution_figure",
    "first_layer_figure",
    "grouped_bars",
    "invariance_figure",
    "mean_std_lines",
    "occlusion_figure",
    "occlusion_photo_figure",
    "tiny_grids_figure",
    "top9_figure",
    "training_curves",
    "unit_projection_figure",
]


# --------------------------------------------------------------------------------------------
# Data and training (notebook 01)
# --------------------------------------------------------------------------------------------


def example_grid(dataset: ImageTensorDataset, per_class: int = 6, seed: int = 0) -> Figure:
    """A grid with one row per class and ``per_class`` random examples of it."""
    generator = torch.Generator().manual_seed(seed)
    rows = dataset.num_classes
    figure, axes = plt.subplots(rows, per_class, figsize=(1.3 * per_class, 1.3 * rows), squeeze=False)
    for label, row in enumerate(axes):
        members = torch.nonzero(dataset.labels == label).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        for axis, index in zip(row, chosen.tolist()):
            axis.imshow(to_display(dataset.images[index]))
        for axis in row:
            axis.set_xticks([]), axis.set_yticks([])
        row[0].set_ylabel(dataset.class_names[label], rotation=0, ha="right", va="center")
    figure.suptitle(f"{per_class} examples per class")
    figure.tight_layout()
    return figure


def class_gallery(
    dataset: ImageTensorDataset,
    classes: Sequence[str] | None = None,
    per_class: int = 1,
    columns: int = 8,
    seed: int = 0,
    title: str | None = None,
    cell_inches: float = 1.5,
) -> Figure:
    """Random examples of many classes in a compact grid, each picture titled with its class.

    Unlike :func:`example_grid` (one row per class) the pictures fill ``columns`` columns row by
    row, so 38 classes fit on one screen. Titles break the class name after ``:`` and at ``/``
    (the embedded dataset's part names: ``face:round-eyes/pointy-ears/muzzle`` becomes four
    short lines).

    Args:
        dataset: the images; ``classes`` are names of ``dataset.class_names``.
        classes: the classes to show, in this order (default: all of them).
        per_class: examples per class (fewer when a class has fewer images).
        columns: pictures per row.
        seed: which random examples.
        title: the figure's title (default: says how many examples per class).
        cell_inches: width of one picture.
    """
    if per_class < 1 or columns < 1:
        raise ValueError(f"per_class and columns must be at least 1, got {per_class} and {columns}")
    classes = list(dataset.class_names if classes is None else classes)
    unknown = [name for name in classes if name not in dataset.class_names]
    if unknown or not classes:
        raise ValueError(
            f"unknown classes {unknown}; choose from {dataset.class_names}"
            if unknown
            else "classes is empty; give at least one class name"
        )
    generator = torch.Generator().manual_seed(seed)
    shown = []
    for name in classes:
        members = torch.nonzero(dataset.labels == dataset.class_names.index(name)).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        shown += [(name, index) for index in chosen.tolist()]
    if not shown:
        raise ValueError(f"the dataset has no images of {classes}")
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        squeeze=False,
        layout="constrained",
        figsize=(cell_inches * columns, (cell_inches + 0.55) * rows + 0.5),
    )
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, (name, index) in zip(axes.flat, shown):
        axis.imshow(to_display(dataset.images[index]), interpolation="nearest")
        axis.set_title(name.replace(":", ":\n").replace("/", "\n"), fontsize=8)
    figure.suptitle(
        title
        if title is not None
        else f"{per_class} example{'s' if per_class > 1 else ''} of each of {len(classes)} classes",
        fontsize=13,
    )
    return figure


def training_curves(history: Sequence[dict[str, Any]], title: str = "Training") -> Figure:
    """Loss and accuracy per epoch (train and validation) from a training history."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for split, style in (("train", "-o"), ("val", "--s")):
        loss_axis.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        accuracy_axis.plot(epochs, [r[f"{split}_acc"] for r in history], style, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title=f"{title}: loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Row-normalized confusion matrix (row = true class) with the counts written in the cells."""
    counts = matrix.double()
    rates = (counts / counts.sum(1, keepdim=True).clamp_min(1)).numpy()
    size = 0.55 * len(class_names) + 2
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix.numpy()):
        if count:
            axis.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if rates[row, column] > 0.5 else "black",
            )
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.colorbar(image, ax=axis, label="fraction of the true class")
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------
# The deconvnet by hand (notebook 02)
# --------------------------------------------------------------------------------------------


def _cell_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _switch_letters(count: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    if count > len(letters):
        raise ValueError(f"switches can be labelled for at most {len(letters)} pooled cells, got {count}")
    return list(letters[:count])


def tiny_grids_figure(
    grids: Sequence[Tensor | np.ndarray],
    titles: Sequence[str],
    *,
    switches: Sequence[tuple[int, int, Tensor]] = (),
    title: str = "",
) -> Figure:
    """Small 2-D arrays side by side with their numbers written in the cells.

    Args:
        grids: 2-D arrays ``(h, w)`` (a few cells wide), drawn left to right, one cell per value,
            coloured by a diverging map centred on zero (its own scale per grid).
        titles: one title per grid.
        switches: ``(pooled grid, input grid, flat indices)`` triples: ``flat indices`` ``(h, w)``
            of the pooled grid (``y * W + x`` into the input grid, as returned by
            ``F.max_pool2d(..., return_indices=True)``). Each pooled cell gets a letter, and
            the input cell it came from is circled and tagged with the same letter (several
            letters where overlapping windows share their maximum).
    """
    if len(grids) != len(titles) or not grids:
        raise ValueError(f"give one title per grid, got {len(grids)} grids and {len(titles)} titles")
    arrays = [np.asarray(g.detach().cpu() if isinstance(g, Tensor) else g, dtype=float) for g in grids]
    for index, array in enumerate(arrays):
        if array.ndim != 2:
            raise ValueError(f"grid {index} must be 2-D (h, w), got shape {array.shape}")
    widths = [array.shape[1] for array in arrays]
    tallest = max(array.shape[0] for array in arrays)
    cell = 0.62
    figure, axes = plt.subplots(
        1,
        len(arrays),
        figsize=(cell * sum(widths) + 0.9 * len(arrays), cell * tallest + 1.3),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
        layout="constrained",
    )
    axes = axes[0]
    for axis, array, grid_title in zip(axes, arrays, titles):
        limit = float(np.abs(array).max()) or 1.0
        axis.imshow(array, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.75)
        for (row, column), value in np.ndenumerate(array):
            axis.text(column, row, _cell_text(value), ha="center", va="center", fontsize=11)
        axis.set_xticks(np.arange(-0.5, array.shape[1]), minor=True)
        axis.set_yticks(np.arange(-0.5, array.shape[0]), minor=True)
        axis.grid(which="minor", color="0.3", linewidth=0.8)
        axis.tick_params(which="both", length=0, labelsize=9)
        axis.set_xticks(range(array.shape[1]))
        axis.set_yticks(range(array.shape[0]))
        axis.set_title(grid_title, fontsize=11)
    for pooled_index, input_index, indices in switches:
        indices = torch.as_tensor(indices).long()
        pooled_shape, input_shape = arrays[pooled_index].shape, arrays[input_index].shape
        if tuple(indices.shape) != pooled_shape:
            raise ValueError(f"switch indices {tuple(indices.shape)} must match the pooled grid {pooled_shape}")
        if int(indices.min()) < 0 or int(indices.max()) >= input_shape[0] * input_shape[1]:
            raise ValueError(f"switch indices must lie inside the input grid {input_shape}")
        tags: dict[tuple[int, int], list[str]] = {}
        for letter, ((row, column), flat) in zip(_switch_letters(indices.numel()), np.ndenumerate(indices.numpy())):
            axes[pooled_index].text(
                column - 0.42, row - 0.42, letter, ha="left", va="top", fontsize=9, color="darkgreen", fontweight="bold"
            )
            tags.setdefault(divmod(int(flat), input_shape[1]), []).append(letter)
        for (row, column), letters in tags.items():
            axes[input_index].add_patch(plt.Circle((column, row), 0.4, fill=False, edgecolor="darkgreen", linewidth=2))
            axes[input_index].text(
                column - 0.45,
                row - 0.45,
                ",".join(letters),
                ha="left",
                va="top",
                fontsize=8,
                color="darkgreen",
                fontweight="bold",
            )
    figure.suptitle(title, fontsize=13)
    return figure


# --------------------------------------------------------------------------------------------
# Projections (notebooks 02 and 03, Figs 2 and 4)
# --------------------------------------------------------------------------------------------


def top9_figure(
    model: nn.Module,
    data: ImageTensorDataset,
    top: TopK,
    channels: Sequence[int],
    projections: Tensor | None = None,
    *,
    columns: int = 2,
    title: str | None = None,
) -> Figure:
    """Fig. 2 of the paper for one layer: per feature map, its top-k deconvnet projections
    (left block) beside the image patches that caused them (right block).

    Args:
        model: the model ``top`` was mined from (eval mode).
        data: the dataset ``top`` indexes into (``top.image_indices``).
        top: the layer's :class:`~course_utils.activations.TopK` (from ``mine_top_activations``).
        channels: the feature maps to show, one block each.
        projections: ``(len(channels), k, 3, H, W)`` from
            :func:`~course_utils.deconvnet.project_top_activations`; computed when ``None``.
        columns: blocks per row of the figure.

    Projections are shown with :func:`normalize_projection`; both are cut to the unit's
    receptive-field window (:func:`receptive_field_window`). Strongest activation first,
    read left to right, top to bottom.
    """
    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("give at least one channel to show")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    k = top.k
    if projections is None:
        projections = project_top_activations(model, data, top, channels)
    if projections.shape[:2] != (len(channels), k) or projections.ndim != 5:
        raise ValueError(
            f"projections must have shape ({len(channels)}, {k}, 3, H, W) for {len(channels)} channels "
            f"and k={k} (project_top_activations(model, data, top, channels)), got {tuple(projections.shape)}"
        )
    side = math.ceil(math.sqrt(k))
    block_rows = math.ceil(len(channels) / columns)
    figure = plt.figure(figsize=(6.6 * columns, 3.5 * block_rows + 0.7))
    heading, body = np.asarray(figure.subfigures(2, 1, height_ratios=[0.7, 3.5 * block_rows])).flatten()
    blocks = np.asarray(body.subfigures(block_rows, columns, squeeze=False)).flatten()
    displayed = normalize_projection(projections)
    for block, channel, channel_projections in zip(blocks, channels, displayed):
        grid = block.add_gridspec(
            side,
            2 * side + 1,
            width_ratios=[1] * side + [0.2] + [1] * side,
            left=0.02,
            right=0.98,
            bottom=0.02,
            top=0.8,
            wspace=0.06,
            hspace=0.06,
        )
        for j in range(k):
            row, column = divmod(j, side)
            image_index = int(top.image_indices[channel, j])
            y, x = (int(v) for v in top.locations[channel, j])
            projection_axis = block.add_subplot(grid[row, column])
            patch_axis = block.add_subplot(grid[row, side + 1 + column])
            show_image(projection_axis, receptive_field_window(model, top.layer, channel_projections[j], y, x))
            show_image(patch_axis, receptive_field_window(model, top.layer, data.images[image_index], y, x))
            if row == 0 and column == side // 2:
                projection_axis.set_title("projections", fontsize=10)
                patch_axis.set_title("image patches", fontsize=10)
        block.suptitle(
            f"{top.layer}, feature map {channel} (strongest: {float(top.values[channel, 0]):.2f})", fontsize=12
        )
    heading.suptitle(
        title or f"{top.layer}: top-{k} activations per feature map, deconvnet projections beside their image patches",
        fontsize=14,
        y=0.75,
    )
    return figure


def feature_evolution_figure(
    snapshots: Mapping[str, nn.Module],
    data: ImageTensorDataset,
    channels: Mapping[str, Sequence[int]],
    *,
    title: str | None = None,
    progress: bool = True,
) -> Figure:
    """Fig. 4 of the paper: rows = feature maps, columns = training snapshots.

    Args:
        snapshots: ``{column label: model}`` in training order (e.g. ``{"epoch 1": ...}``), same
            architecture, eval mode.
        data: the images searched (e.g. a sample of the training or validation set).
        channels: ``{layer: channels}``, e.g. ``{"conv1": [3, 7], "conv5": [12]}``; one row each.

    Each cell is the deconvnet projection of that feature map's strongest activation over
    ``data`` for that snapshot (mined with ``k=1``), shown with :func:`normalize_projection`
    in its receptive-field window.
    """
    if not snapshots or not channels or not all(len(c) for c in channels.values()):
        raise ValueError("give at least one snapshot and, per layer, at least one channel")
    layers = list(channels)
    columns: list[list[Tensor]] = []
    for model in progress_bar(snapshots.values(), desc="feature evolution", progress=progress):
        top = mine_top_activations(model, data, layers, k=1, progress=False)
        column = []
        for layer in layers:
            projections = normalize_projection(project_top_activations(model, data, top[layer], channels[layer])[:, 0])
            for channel, projection in zip(channels[layer], projections):
                y, x = (int(v) for v in top[layer].locations[channel, 0])
                column.append(receptive_field_window(model, layer, projection, y, x))
        columns.append(column)
    cells = [list(row) for row in zip(*columns)]
    row_labels = [f"{layer}\nmap {channel}" for layer in layers for channel in channels[layer]]
    return image_table(
        cells,
        row_labels,
        list(snapshots),
        title or "Feature evolution: the strongest activation of each feature map, projected, per snapshot",
        cell_inches=1.3,
    )


def compare_projections_figure(
    model: nn.Module,
    pictures: Tensor,
    layer: str,
    selections: Tensor,
    maps: Mapping[str, Tensor],
    *,
    title: str = "",
    row_labels: Sequence[str] | None = None,
) -> Figure:
    """Rows = selected units; columns = the image patch, then one column per method.

    Args:
        model: the model (for the receptive-field geometry of ``layer``).
        pictures: ``(N, 3, H, W)`` the images for display (uint8 or float in [0, 1]).
        layer: the layer of the selected units.
        selections: ``(S, 4)`` rows ``(image_index, channel, y, x)`` into ``pictures``.
        maps: ``{column title: (S, 3, H, W) signed maps}``, e.g. deconvnet projections, guided
            backprop and gradients of the same selections.

    Every map is shown with :func:`normalize_projection`, all cut to the unit's receptive-field
    window.
    """
    selections = torch.as_tensor(selections).long()
    if selections.ndim != 2 or selections.shape[1] != 4:
        raise ValueError(f"selections must be (S, 4) rows (image_index, channel, y, x), got {tuple(selections.shape)}")
    for name, values in maps.items():
        if values.ndim != 4 or values.shape[0] != len(selections) or values.shape[-2:] != pictures.shape[-2:]:
            raise ValueError(
                f"map {name!r} must have shape ({len(selections)}, 3, {pictures.shape[-2]}, {pictures.shape[-1]}), "
                f"one per selection, got {tuple(values.shape)}"
            )
    displayed = {name: normalize_projection(values) for name, values in maps.items()}
    cells = []
    for row, (image_index, _channel, y, x) in enumerate(selections.tolist()):
        cells.append(
            [receptive_field_window(model, layer, pictures[image_index], y, x)]
            + [receptive_field_window(model, layer, values[row], y, x) for values in displayed.values()]
        )
    if row_labels is None:
        row_labels = [f"{layer} map {c}\nimage {i} at ({y}, {x})" for i, c, y, x in selections.tolist()]
    return image_table(cells, row_labels, ["image patch", *maps], title, cell_inches=1.9)


def unit_projection_figure(
    model: nn.Module,
    picture: Tensor,
    layer: str,
    location: tuple[int, int],
    projection: Tensor,
    mask: Tensor | None = None,
    *,
    title: str = "",
) -> Figure:
    """One unit in context: the whole image with the unit's receptive-field box, its projection
    (:func:`normalize_projection`) with the same box, and (given a ``(H, W)`` bool object
    ``mask``) the projection's magnitude with the object's outline.

    ``picture`` is ``(3, H, W)`` for display (uint8 or [0, 1]), ``projection`` ``(3, H, W)`` signed.
    """
    if projection.ndim != 3 or projection.shape[-2:] != picture.shape[-2:]:
        raise ValueError(
            f"projection must be one (3, H, W) map the size of the picture {tuple(picture.shape)}, "
            f"got {tuple(projection.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(picture.shape[-2:]):
        raise ValueError(f"mask must be (H, W) = {tuple(picture.shape[-2:])}, got {tuple(mask.shape)}")
    top, left, bottom, right = receptive_field_box(model, layer, *location, picture.shape[-2:])
    panels = 3 if mask is not None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.6))
    axes[0].imshow(to_display(picture), interpolation="nearest")
    axes[0].set_title("image and receptive field", fontsize=12)
    axes[1].imshow(to_display(normalize_projection(projection)), interpolation="nearest")
    axes[1].set_title("deconvnet projection", fontsize=12)
    if mask is not None:
        magnitude = projection.detach().abs().sum(0)
        shown = axes[2].imshow(magnitude.cpu().numpy(), cmap="magma", interpolation="nearest")
        axes[2].contour(mask.cpu().numpy().astype(float), levels=[0.5], colors="cyan", linewidths=1.5)
        axes[2].set_title("|projection| and object outline", fontsize=12)
        figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04, label="sum over RGB of |projection|")
    for axis in axes[:2]:
        axis.add_patch(
            Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, edgecolor="yellow", linewidth=2)
        )
    for axis in axes:
        axis.set_xlabel("x (pixels)")
        axis.set_ylabel("y (pixels)")
    figure.suptitle(title or f"{layer} unit at (y={location[0]}, x={location[1]})", fontsize=13)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------------------------
# Invariance (notebook 04, Fig 5)
# --------------------------------------------------------------------------------------------


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
    ``(N * (H + gap) - gap, A * (W + gap) - gap, 3)`` picture in [0, 1], white gutters: row ``i``
    is image ``i``, column ``j`` amount ``j``."""
    shown = [dataset.denormalize(transform_images(images, kind, amount)) for amount in amounts]
    tiles = [to_display(shown[column][row]) for row in range(len(images)) for column in range(len(amounts))]
    return mosaic(tiles, len(amounts), gap=gap)


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
            axis.set_xlabel(AMOUNT_LABELS[curves.kind])
            axis.grid(alpha=0.3)
            if curves.kind == "rotate":
                axis.set_xticks(np.arange(0, amounts.max() + 1, 90))
        figure.legend(loc="outside lower center", ncols=min(len(shown), 6), title="image (true class)")
        figure.suptitle(f"Invariance to {_TRANSFORMATION_NAMES[curves.kind]} (Zeiler & Fergus, Fig. 5)", fontsize=16)
    return figure


# --------------------------------------------------------------------------------------------
# Occlusion (notebook 05, Fig 7)
# --------------------------------------------------------------------------------------------


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


def occlusion_photo_figure(
    model: nn.Module,
    photos: ImageTensorDataset,
    index: int,
    target: int,
    class_names: Sequence[str],
    *,
    window: int,
    stride: int,
    layer: str = "conv5",
) -> tuple[OcclusionResult, Figure]:
    """Fig 7 for photo ``index`` of ``photos`` (pictures in the model's input size, normalized with
    the model's statistics): the occlusion map for class ``target`` of the model's
    ``class_names``, and the strongest map of ``layer`` projected to pixels at its strongest
    unit. Returns the occlusion result and :func:`occlusion_figure`'s figure."""
    image = photos.normalize(photos.images[index])
    result = occlusion_map(model, image, window=window, stride=stride, target=target, layer=layer)
    assert result.channel is not None  # occlusion_map reports the strongest map of the layer it was given
    projection = project_activation(model, image, layer, result.channel)
    shown = ImageTensorDataset(photos.images[[index]], torch.tensor([target]), class_names, photos.mean, photos.std)
    return result, occlusion_figure(result, image, projection, shown)


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
    with :func:`course_utils.display.normalize_projection`; (d) P(target class) (viridis, 0 to 1);
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


# --------------------------------------------------------------------------------------------
# The first layer (notebook 07, Fig 6)
# --------------------------------------------------------------------------------------------


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
            f"{name}\n{report.filters} filters {report.kernel}x{report.kernel}, "
            f"stride {report.stride}\ndead: {report.dead_fraction:.0%}, "
            f"aliased energy: {report.aliased_energy:.0%}",
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
        nyquist = 1.0 / (2 * report.stride)
        spectrum_axis.add_patch(
            Rectangle(
                (-nyquist, -nyquist),
                2 * nyquist,
                2 * nyquist,
                fill=False,
                edgecolor="cyan",
                linewidth=2,
                label=f"Nyquist of stride {report.stride}",
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


# --------------------------------------------------------------------------------------------
# Repeated measurements (notebooks 06-08)
# --------------------------------------------------------------------------------------------


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
