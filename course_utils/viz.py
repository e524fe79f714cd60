"""Figure helpers. Every function returns a matplotlib ``Figure`` (it does not call ``show``).

Conventions: titles and axis labels on every figure; images are shown with ``imshow`` in
[0, 1]; signed maps use a diverging colour map centred on zero, probability maps the
perceptually uniform ``viridis`` (both print well in greyscale).

**How projections are displayed (one rule, used everywhere).** A deconvnet projection, a
gradient, a guided-backprop map or a synthesized input is a signed ``(3, H, W)`` image in the
model's normalized input space, and its scale means little (it grows with the activation).
:func:`normalize_projection` divides *each* projection by its own largest absolute value
(over all three colour channels together, so hue is kept) and maps ``[-1, 1]`` to ``[0, 1]``:
zero is mid-grey (0.5), the strongest positive value 1, the strongest negative value 0, and
a pixel is brighter than grey exactly where the projection is positive. Every projection
therefore uses the full contrast range, as in the paper's figures, so compare *structure*,
not brightness, between cells. An all-zero projection stays uniformly grey.

**Crops.** A unit of a convolutional layer sees only its receptive field, and its projection
is exactly zero outside it. Grids of units (:func:`top9_figure`, :func:`feature_evolution_figure`,
:func:`compare_projections_figure`) show each unit's full receptive-field window
(:func:`receptive_field_window`): image patch and projection are cut from the same box, and
the part of the window that lies outside the image is white (in projections too, where grey
means zero), so every cell of one layer has the same scale and the image border is visible.

Figures: :func:`top9_figure` (Fig. 2), :func:`feature_evolution_figure` (Fig. 4),
:func:`compare_projections_figure` (methods side by side), :func:`unit_projection_figure` (one
unit in its image), :func:`image_table` (any labelled grid of pictures) and
:func:`tiny_grids_figure` (hand-sized arrays with their numbers, switches marked).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .activations import TopK, mine_top_activations, receptive_field, receptive_field_box
from .data import ImageTensorDataset
from .deconvnet import project_top_activations
from .progress import progress_bar

__all__ = [
    "to_display",
    "example_grid",
    "class_gallery",
    "training_curves",
    "confusion_figure",
    "normalize_projection",
    "receptive_field_window",
    "image_table",
    "select_feature_maps",
    "top9_figure",
    "feature_evolution_figure",
    "compare_projections_figure",
    "unit_projection_figure",
    "tiny_grids_figure",
]


def to_display(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor in [0, 1] (or uint8) -> ``(H, W, 3)`` float array for ``imshow``."""
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    return image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


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
# Projections: normalization and receptive-field windows
# --------------------------------------------------------------------------------------------


def normalize_projection(projection: Tensor) -> Tensor:
    """Signed projection(s) ``(..., C, H, W)`` -> display values in [0, 1], same shape.

    Each projection (the last three dimensions) is divided by its own largest absolute value
    and mapped by ``0.5 + 0.5 * p / max|p|``: zero -> 0.5, the strongest positive value -> 1,
    the strongest negative value -> 0, the sign is kept (brighter than grey where positive).
    An all-zero projection gives 0.5 everywhere (no division by zero).
    """
    if not isinstance(projection, Tensor) or projection.ndim < 3:
        shape = tuple(projection.shape) if isinstance(projection, Tensor) else type(projection).__name__
        raise ValueError(f"projection must be a (C, H, W) or (..., C, H, W) tensor, got {shape}")
    if not projection.is_floating_point():
        raise ValueError(f"projection must be a float tensor (a signed projection), got {projection.dtype}")
    projection = projection.detach()
    if not torch.isfinite(projection).all():
        raise ValueError("projection contains NaN or infinite values; check the model and the input images")
    scale = projection.abs().amax(dim=(-3, -2, -1), keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return 0.5 + 0.5 * projection / scale


def _display_float(picture: Tensor) -> Tensor:
    """``(C, H, W)`` uint8 or float in [0, 1] -> float in [0, 1] (no copy for floats)."""
    if picture.dtype == torch.uint8:
        return picture.float() / 255.0
    if not picture.is_floating_point():
        raise ValueError(f"pictures must be uint8 or float in [0, 1], got {picture.dtype}")
    return picture.detach()


def receptive_field_window(model: nn.Module, layer: str, picture: Tensor, y: int, x: int, fill: float = 1.0) -> Tensor:
    """The full receptive-field window of unit ``(y, x)`` of ``layer`` cut from ``picture``.

    Args:
        model: the model whose layer geometry is used (square receptive fields).
        layer: a convolutional layer's name (``"conv3"``, ``"pool2"``...).
        picture: ``(C, H, W)``, uint8 or float in [0, 1] (an image, or a normalized projection).
        y, x: the unit's location in the layer's output.
        fill: value of the window's pixels that lie outside the picture.

    Returns:
        ``(C, S, S)`` float, ``S`` the receptive field size: the picture inside the unit's box
        (:func:`~course_utils.activations.receptive_field_box`), ``fill`` around it.
    """
    if not isinstance(picture, Tensor) or picture.ndim != 3:
        shape = tuple(picture.shape) if isinstance(picture, Tensor) else type(picture).__name__
        raise ValueError(f"picture must be one (C, H, W) tensor, got {shape}; index a batch with pictures[i]")
    size, stride, offset = receptive_field(model, layer)
    top, left = y * stride + offset, x * stride + offset
    clipped_top, clipped_left, bottom, right = receptive_field_box(model, layer, y, x, picture.shape[-2:])
    picture = _display_float(picture)
    window = picture.new_full((picture.shape[0], size, size), float(fill))
    window[:, clipped_top - top : bottom - top, clipped_left - left : right - left] = picture[
        :, clipped_top:bottom, clipped_left:right
    ]
    return window


# --------------------------------------------------------------------------------------------
# Grids of pictures
# --------------------------------------------------------------------------------------------


def _show(axis: Axes, picture: Tensor | None) -> None:
    """Draw one ``(3, h, w)`` picture (uint8 or [0, 1]) without ticks; ``None`` leaves the cell blank."""
    axis.set_xticks([]), axis.set_yticks([])
    if picture is None:
        axis.set_axis_off()
        return
    axis.imshow(to_display(_display_float(picture)), interpolation="nearest")


def image_table(
    cells: Sequence[Sequence[Tensor | None]],
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    title: str = "",
    cell_inches: float = 1.5,
) -> Figure:
    """A table of pictures: ``cells[row][column]`` is a ``(3, h, w)`` tensor (uint8 or float
    in [0, 1]) or ``None`` (blank). Row labels go left of the rows, column labels above them."""
    rows = len(cells)
    columns = max((len(row) for row in cells), default=0)
    if rows == 0 or columns == 0:
        raise ValueError("cells must hold at least one row with at least one picture")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
    if column_labels is not None and len(column_labels) != columns:
        raise ValueError(f"got {len(column_labels)} column labels for {columns} columns")
    label_inches = 1.6 if row_labels is not None else 0.2
    figure, axes = plt.subplots(
        rows,
        columns,
        squeeze=False,
        layout="constrained",
        figsize=(label_inches + cell_inches * columns, 0.9 + (cell_inches + 0.15) * rows),
    )
    for row_index, row in enumerate(axes):
        for column_index, axis in enumerate(row):
            cell = cells[row_index][column_index] if column_index < len(cells[row_index]) else None
            _show(axis, cell)
        if row_labels is not None:
            row[0].set_axis_on()
            row[0].set_ylabel(row_labels[row_index], rotation=0, ha="right", va="center", fontsize=11)
    if column_labels is not None:
        for axis, label in zip(axes[0], column_labels):
            axis.set_title(label, fontsize=11)
    figure.suptitle(textwrap.fill(title, width=max(30, int(figure.get_figwidth() * 8))), fontsize=13)
    return figure


def select_feature_maps(top: TopK, labels: Tensor | None = None, count: int = 6) -> list[int]:
    """Pick ``count`` feature maps of a layer worth showing.

    Maps are taken strongest first (mean of their top-k values). Given ``labels``, at most one
    map per *dominant class* (the most common class among the map's top-k images) is taken
    first, so a figure of a high layer does not show six detectors of one class; when fewer
    classes occur than ``count``, the strongest remaining maps fill up.

    Args:
        top: the layer's :class:`~course_utils.activations.TopK`.
        labels: ``(N,)`` class labels of the mined images (``dataset.labels``), or ``None`` for
            simply the strongest maps (low layers, whose features are not class-specific).
        count: how many maps to return (fewer when the layer has fewer).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    by_strength = top.values.mean(1).argsort(descending=True, stable=True).tolist()
    if labels is None:
        return by_strength[:count]
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or int(top.image_indices.max()) >= len(labels):
        raise ValueError(
            f"labels must be the (N,) labels of the mined images; got shape {tuple(labels.shape)} for image "
            f"indices up to {int(top.image_indices.max())}"
        )
    dominant = labels[top.image_indices].mode(dim=1).values.tolist()
    picked, classes = [], set()
    for channel in by_strength:
        if dominant[channel] not in classes:
            picked.append(channel)
            classes.add(dominant[channel])
    picked = picked[:count]
    picked += [channel for channel in by_strength if channel not in picked][: count - len(picked)]
    return picked


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
            _show(projection_axis, receptive_field_window(model, top.layer, channel_projections[j], y, x))
            _show(patch_axis, receptive_field_window(model, top.layer, data.images[image_index], y, x))
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
    axes[0].imshow(to_display(_display_float(picture)), interpolation="nearest")
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
# Tiny hand-sized grids (notebook 02)
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
