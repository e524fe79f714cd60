"""How the course shows pictures: the one display module every figure and explorer uses.

**Images.** Pictures are ``(3, H, W)`` tensors, uint8 or float in [0, 1]; :func:`to_display`
turns one into an ``(H, W, 3)`` float array for ``imshow``, :func:`to_pixels` into enlarged
``uint8`` pixels for the explorers' PNGs, and :func:`mosaic` tiles many into one array (the
explorers' grids, the filters of :func:`filter_mosaic`, the transformed images of Fig 5).

**Projections (one rule, used everywhere).** A deconvnet projection, a gradient, a
guided-backprop map or a synthesized input is a signed ``(3, H, W)`` image in the model's
normalized input space, and its scale means little (it grows with the activation).
:func:`normalize_projection` divides *each* projection by its own largest absolute value (over
all three colour channels together, so hue is kept) and maps ``[-1, 1]`` to ``[0, 1]``: zero
is mid-grey (0.5), the strongest positive value 1, the strongest negative value 0, and a pixel
is brighter than grey exactly where the projection is positive. Every projection therefore
uses the full contrast range, as in the paper's figures, so compare *structure*, not
brightness, between cells. An all-zero projection stays uniformly grey.

**Crops.** A unit of a convolutional layer sees only its receptive field, and its projection
is exactly zero outside it. Grids of units show each unit's full receptive-field window
(:func:`receptive_field_window`): image patch and projection are cut from the same box, and
the part of the window that lies outside the image is white (in projections too, where grey
means zero), so every cell of one layer has the same scale and the image border is visible.

:func:`image_table` draws any labelled grid of pictures; :func:`notebook_setup` is the
notebooks' preamble (threads and figure resolution).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

from .activations import receptive_field, receptive_field_box
from .threads import set_torch_threads

__all__ = [
    "DISPLAY_PIXELS",
    "MOSAIC_GAP",
    "display_scale",
    "filter_mosaic",
    "image_table",
    "mosaic",
    "normalize_projection",
    "notebook_setup",
    "receptive_field_window",
    "show_image",
    "to_display",
    "to_pixels",
]

#: Side, in screen pixels, that the explorers enlarge one image to (about).
DISPLAY_PIXELS = 192
#: White pixels between the cells of a mosaic in the explorers.
MOSAIC_GAP = 4


def notebook_setup(threads: int | None = None, dpi: int = 90) -> None:
    """The notebooks' preamble: ``threads`` torch threads (default: one per core, as the
    command-line tools use) and figures at ``dpi``."""
    set_torch_threads(threads)
    plt.rcParams["figure.dpi"] = dpi


def _as_float(picture: Tensor) -> Tensor:
    """``(C, H, W)`` uint8 or float in [0, 1] -> float in [0, 1] (no copy for floats)."""
    if picture.dtype == torch.uint8:
        return picture.float() / 255.0
    if not picture.is_floating_point():
        raise ValueError(f"pictures must be uint8 or float in [0, 1], got {picture.dtype}")
    return picture.detach()


def to_display(image: Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor in [0, 1] (or uint8) -> ``(H, W, 3)`` float array for ``imshow``."""
    return _as_float(image).clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def to_pixels(picture: Tensor, scale: int = 1) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] (or uint8) -> ``(H * scale, W * scale, 3)`` uint8, each
    pixel repeated ``scale`` times along both axes."""
    if picture.dtype == torch.uint8:
        array = picture.permute(1, 2, 0).cpu().numpy()
    else:
        array = np.round(to_display(picture) * 255).astype(np.uint8)
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def display_scale(size: int, target: int = DISPLAY_PIXELS) -> int:
    """The whole enlargement factor that brings ``size`` pixels closest to ``target`` (at least 1)."""
    return max(1, round(target / size))


def mosaic(tiles: Sequence[np.ndarray], columns: int, gap: int = 0, border: int = 0) -> np.ndarray:
    """Same-sized ``(h, w, 3)`` tiles (float in [0, 1] or uint8) in rows of ``columns``, ``gap``
    white pixels between them and ``border`` around them: one ``(rows * (h + gap) - gap + 2 *
    border, ...)`` array of the tiles' dtype. Tile ``j`` starts at row
    ``border + (j // columns) * (h + gap)``; empty cells stay white."""
    if not tiles:
        raise ValueError("mosaic needs at least one tile")
    if columns < 1 or gap < 0 or border < 0:
        raise ValueError(f"columns must be >= 1 and gap, border >= 0, got {columns}, {gap}, {border}")
    height, width, channels = tiles[0].shape
    rows = math.ceil(len(tiles) / columns)
    white = 255 if tiles[0].dtype == np.uint8 else 1.0
    shape = (rows * (height + gap) - gap + 2 * border, columns * (width + gap) - gap + 2 * border, channels)
    canvas = np.full(shape, white, dtype=tiles[0].dtype)
    for index, tile in enumerate(tiles):
        if tile.shape != (height, width, channels):
            raise ValueError(f"tile {index} has shape {tile.shape}, the first {tiles[0].shape}; tiles must match")
        top = border + (index // columns) * (height + gap)
        left = border + (index % columns) * (width + gap)
        canvas[top : top + height, left : left + width] = tile
    return canvas


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
    values = weight.detach().float().cpu()
    largest = values.abs().max().item()
    scaled = (0.5 + 0.5 * values / (largest if largest > 0 else 1.0)).expand(-1, 3, -1, -1)
    return mosaic(list(scaled.permute(0, 2, 3, 1).numpy()), columns, gap=pad, border=pad)


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
    picture = _as_float(picture)
    window = picture.new_full((picture.shape[0], size, size), float(fill))
    window[:, clipped_top - top : bottom - top, clipped_left - left : right - left] = picture[
        :, clipped_top:bottom, clipped_left:right
    ]
    return window


def show_image(axis: Axes, picture: Tensor | None) -> None:
    """Draw one ``(3, h, w)`` picture (uint8 or [0, 1]) without ticks; ``None`` leaves the cell blank."""
    axis.set_xticks([]), axis.set_yticks([])
    if picture is None:
        axis.set_axis_off()
        return
    axis.imshow(to_display(picture), interpolation="nearest")


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
            show_image(axis, cell)
        if row_labels is not None:
            row[0].set_axis_on()
            row[0].set_ylabel(row_labels[row_index], rotation=0, ha="right", va="center", fontsize=11)
    if column_labels is not None:
        for axis, label in zip(axes[0], column_labels):
            axis.set_title(label, fontsize=11)
    figure.suptitle(textwrap.fill(title, width=max(30, int(figure.get_figwidth() * 8))), fontsize=13)
    return figure
