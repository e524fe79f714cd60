"""Occlusion sensitivity (Zeiler & Fergus, Fig. 7), computed by incremental inference.

A grey square (its value ``fill``; by default the dataset mean, i.e. zeros in normalized space)
is slid over the image. For every occluder position the model sees the occluded image and we
record (b) the summed activation of one feature map of a chosen layer, (d) the probability of
the target class and (e) the most probable class.

**Occluder grid.** Top-left corners are ``0, stride, 2*stride, ...`` up to ``H - window``
(rows) and ``W - window`` (columns), so every occluder lies entirely inside the image and the
maps have ``rows = (H - window) // stride + 1`` and ``cols = (W - window) // stride + 1``
entries. :func:`occlusion_to_pixels` turns a map into a picture of the image's size: each
pixel gets the mean over the occluders that cover it (NaN where none does).

**Incremental inference.** An occluder changes only the part of each layer's output that its
receptive field reaches. The unoccluded image is run once and every layer's output cached;
for a batch of occluder positions (a band of occluder rows) only a slab of each layer is
recomputed: the layer runs on a crop of its input (the cached map with the changed slab of
the layer below pasted in, plus the halo its kernel needs), without padding, because the
borders are padded explicitly (zeros for convolutions, ``-inf`` for max pooling). A stride-1
convolution whose changed input is much smaller than its output slab uses linearity instead:
cached output + transposed convolution of the input's change. When the slab would cover
(nearly) the whole map, or a layer is not a convolution, max pooling or pointwise layer, the
occluded maps are assembled in full and the rest of the network runs as a normal batched
forward. The numbers equal a forward pass of each occluded image up to float rounding.

Captum's ``Occlusion`` returns, per pixel, the mean of ``f(image) - f(occluded)`` over the
windows covering it; with the same window, stride and fill (and ``H - window`` divisible
by the stride) that is ``f(image) - occlusion_to_pixels(map)`` for the map of ``f``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_eval_mode, check_fill, check_float_images, check_images, check_index, check_positive_int
from .layers import check_standard_layers, last_layer, layer_path, pair, record_forward
from .progress import progress_bar

__all__ = [
    "occlude",
    "OcclusionResult",
    "OcclusionDrop",
    "occluder_positions",
    "occlusion_map",
    "occlusion_to_pixels",
    "occluder_coverage",
    "occlusion_probability_drop",
]

#: Layers that act on each spatial position separately (in eval mode).
_POINTWISE_LAYERS = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.BatchNorm2d,
    nn.LocalResponseNorm,
)


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass
class OcclusionResult:
    """Maps over the occluder grid of one image.

    Attributes:
        rows, cols: ``(R,)`` and ``(C,)`` int64 top-left pixel coordinates of the occluders.
        window, stride: occluder side and step in pixels.
        image_size: ``(H, W)`` of the image.
        target: class whose probability :attr:`probability` holds.
        probabilities: ``(R, C, num_classes)`` softmax output per occluder position.
        unoccluded_probabilities: ``(num_classes,)`` softmax output for the clean image.
        layer, channel: the feature map summed in :attr:`activation` (``None`` if no layer).
        activation: ``(R, C)`` sum of ``layer``'s ``channel`` over its spatial positions,
            per occluder position (panel b), or ``None``. Panel c, the projection of this
            feature map, is ``course_utils.deconvnet.project_activation(model, image, layer,
            channel)``.
        unoccluded_activation: the same sum on the clean image, or ``None``.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    window: int
    stride: int
    image_size: tuple[int, int]
    target: int
    probabilities: torch.Tensor
    unoccluded_probabilities: torch.Tensor
    layer: str | None
    channel: int | None
    activation: torch.Tensor | None
    unoccluded_activation: float | None

    @property
    def probability(self) -> torch.Tensor:
        """``(R, C)`` probability of :attr:`target` per occluder position (panel d)."""
        return self.probabilities[..., self.target]

    @property
    def top_class(self) -> torch.Tensor:
        """``(R, C)`` int64 most probable class per occluder position (panel e)."""
        return self.probabilities.argmax(dim=-1)

    def to_pixels(self, values: torch.Tensor) -> torch.Tensor:
        """``(R, C)`` map -> ``(H, W)`` picture; see :func:`occlusion_to_pixels`."""
        return occlusion_to_pixels(values, self.window, self.stride, self.image_size)


@dataclass
class OcclusionDrop:
    """How much the target probability falls when the occluder covers the object.

    Attributes:
        object_drop: mean of ``P(clean) - P(occluded)`` over positions on the object.
        background_drop: the same mean over positions that touch no object pixel.
        num_object, num_background: how many positions each mean is over.
    """

    object_drop: float
    background_drop: float
    num_object: int
    num_background: int


# --------------------------------------------------------------------------------------
# Occluder grid and conversion to pixels
# --------------------------------------------------------------------------------------
def occlude(
    image: torch.Tensor, y: int, x: int, window: int, fill: float | Sequence[float] | torch.Tensor = 0.0
) -> torch.Tensor:
    """A copy of ``image`` ``(3, H, W)`` with the ``window x window`` occluder whose top-left
    corner is at ``(y, x)`` set to ``fill`` (normalized units, one value or 3 per channel);
    the part outside the image is dropped. One cell of :func:`occlusion_map`'s grid."""
    check_float_images(image, batched=False)
    window = check_positive_int(window, "window", "occluder side in pixels")
    values = check_fill(fill, "fill").to(image)
    occluded = image.clone()
    top, left = max(int(y), 0), max(int(x), 0)
    occluded[:, top : int(y) + window, left : int(x) + window] = values.view(3, 1, 1)
    return occluded


def occluder_positions(size: int, window: int, stride: int) -> torch.Tensor:
    """Top-left coordinates ``0, stride, ...`` up to ``size - window``, int64 ``(n,)``."""
    window, stride = _check_window(window, stride, (size, size))
    return torch.arange(0, size - window + 1, stride, dtype=torch.long)


def occlusion_to_pixels(values: torch.Tensor, window: int, stride: int, image_size: tuple[int, int]) -> torch.Tensor:
    """Spread a ``(R, C)`` map over the image: ``(H, W)``, each pixel the mean of the covering occluders.

    Pixels that no occluder covers (possible when ``H - window`` is not a multiple of
    ``stride``) are NaN.
    """
    height, width = image_size
    window, stride = _check_window(window, stride, image_size)
    expected = ((height - window) // stride + 1, (width - window) // stride + 1)
    if values.ndim != 2 or tuple(values.shape) != expected:
        raise ValueError(
            f"expected a map of shape {expected} (occluder rows, cols for window {window}, stride "
            f"{stride}, image {height}x{width}), got {tuple(values.shape)}"
        )
    kernel = torch.ones(1, 1, window, window, dtype=torch.float64, device=values.device)
    spread = values.to(torch.float64)[None, None]
    total = F.conv_transpose2d(spread, kernel, stride=stride)[0, 0]
    count = F.conv_transpose2d(torch.ones_like(spread), kernel, stride=stride)[0, 0]
    pixels = torch.full((height, width), float("nan"), dtype=torch.float64, device=values.device)
    covered_h, covered_w = total.shape
    pixels[:covered_h, :covered_w] = total / count
    return pixels.to(values.dtype if values.is_floating_point() else torch.float32)


def occluder_coverage(mask: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """Number of ``mask`` pixels under each occluder: ``(H, W)`` bool -> ``(R, C)`` int64."""
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a (H, W) bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    window, stride = _check_window(window, stride, tuple(mask.shape))
    counts = F.avg_pool2d(mask[None, None].double(), window, stride, divisor_override=1)
    return counts[0, 0].round().long()


def occlusion_probability_drop(result: OcclusionResult, object_mask: torch.Tensor) -> OcclusionDrop:
    """Mean fall of ``P(target)`` for occluders on the object vs on background only.

    ``object_mask`` is ``(H, W)`` bool (the embedded dataset's ``extras["masks"][i]``). An
    occluder is *on the object* when it covers at least half of the object's pixels or its
    centre pixel ``(top + window // 2, left + window // 2)`` is an object pixel; it is
    *background* when it covers no object pixel. Positions that are neither are ignored.
    """
    if tuple(object_mask.shape) != result.image_size:
        raise ValueError(f"object_mask must have the image's shape {result.image_size}, got {tuple(object_mask.shape)}")
    covered = occluder_coverage(object_mask, result.window, result.stride)
    object_pixels = int(object_mask.sum())
    if object_pixels == 0:
        raise ValueError("object_mask has no object pixel; pass the mask of the image's object")
    half = result.window // 2
    centred = object_mask[(result.rows + half)[:, None], (result.cols + half)[None, :]]
    on_object = (2 * covered >= object_pixels) | centred
    background = covered == 0
    drop = (result.unoccluded_probabilities[result.target] - result.probability).double()

    def mean(selected: torch.Tensor) -> float:
        return float(drop[selected].mean()) if bool(selected.any()) else float("nan")

    return OcclusionDrop(mean(on_object), mean(background), int(on_object.sum()), int(background.sum()))


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------
def _check_window(window: int, stride: int, image_size: tuple[int, ...]) -> tuple[int, int]:
    """Validated ``(window, stride)`` for an image of ``image_size`` (H, W)."""
    window = check_positive_int(window, "window", "occluder side in pixels")
    stride = check_positive_int(stride, "stride", "occluder step in pixels")
    if window > min(image_size):
        raise ValueError(
            f"occluder of {window}x{window} pixels is larger than the image "
            f"({image_size[0]}x{image_size[1]}); use a window of at most {min(image_size)}"
        )
    return window, stride


# --------------------------------------------------------------------------------------
# Incremental inference
# --------------------------------------------------------------------------------------
@dataclass
class _Region:
    """Per-axis part of a layer's output that the occluder changes.

    For occluder row (column) index ``k``: rows ``low[k]..high[k]`` (inclusive) change, and
    ``top[k]`` starts a box of ``size`` rows inside the map that holds them (``size`` is the
    largest extent over the tile, so every occluder of a tile has a box of the same size).
    """

    low: torch.Tensor
    high: torch.Tensor
    top: torch.Tensor
    size: int


@dataclass
class _Step:
    """How one layer of the incremental part is computed.

    ``kind``: "pointwise" (the layer runs on the slab), "direct" (the layer runs on a crop of
    its input: the cached map with the slab pasted in, padded explicitly) or "delta" (a
    stride-1 convolution is linear: the change of its output is the transposed convolution
    of the change of its input, whose box is smaller than the output box).
    """

    index: int
    module: nn.Module
    kind: Literal["pointwise", "direct", "delta"]
    rows: _Region
    cols: _Region
    input_rows: _Region
    input_cols: _Region
    crop_size: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    pad_value: float = 0.0
    transposed_weight: torch.Tensor | None = None
    shift: tuple[int, int] = (0, 0)


#: A layer is recomputed in full (ending the incremental part) once the box it would
#: recompute exceeds this fraction of its output: the gathers then cost more than they save.
_FULL_FRACTION = 0.8
#: A stride-1 convolution takes the "delta" route when its changed input box is at least this
#: many times smaller than its output box (conv2 of the ZFNet: 5x5 against 9x9); below that,
#: the extra gathers cost about what the transposed convolution saves.
_DELTA_GAIN = 2.0


def _window_geometry(module: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """(kernel, stride, padding, dilation) of a zero-padded conv or a max pool, else None."""
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return pair(module.kernel_size), pair(module.stride), pair(module.padding), pair(module.dilation)
    if isinstance(module, nn.MaxPool2d) and not module.ceil_mode and not module.return_indices:
        return (
            pair(module.kernel_size),
            pair(module.stride or module.kernel_size),
            pair(module.padding),
            pair(module.dilation),
        )
    return None


def _next_region(previous: _Region, size_out: int, kernel: int, stride: int, padding: int, dilation: int) -> _Region:
    """Output rows of a window layer that the changed input rows reach, and their box."""
    reach = dilation * (kernel - 1)
    low = torch.div(previous.low + padding - reach + stride - 1, stride, rounding_mode="floor").clamp(min=0)
    high = torch.div(previous.high + padding, stride, rounding_mode="floor").clamp(max=size_out - 1)
    size = int((high - low).max()) + 1
    return _Region(low, high, low.clamp(max=size_out - size), size)


def _gather(
    cached: torch.Tensor,
    slab: torch.Tensor | None,
    slab_top: torch.Tensor,
    slab_left: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    pad_value: float,
    change_only: bool = False,
) -> torch.Tensor:
    """Read boxes of each occluder's version of a map: the cached map with the slab pasted in.

    ``cached`` ``(C, H, W)``; ``slab`` ``(B, C, h, w)`` placed at ``(slab_top[b], slab_left[b])``
    (it may reach outside the map; only its part inside counts), or ``None`` for the cached
    map alone; ``rows`` ``(B, hc)`` and ``cols`` ``(B, wc)`` the coordinates to read, where
    those outside the map read ``pad_value``. ``change_only`` returns the version minus the
    cached map instead (coordinates must then lie inside the map). Returns ``(B, C, hc, wc)``
    (channels-last memory).
    """
    channels, height, width = cached.shape
    batch = rows.shape[0]
    in_map = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    parts = [cached.permute(1, 2, 0).reshape(height * width, channels), cached.new_full((1, channels), pad_value)]
    cached_index = torch.where(in_map, rows[:, :, None] * width + cols[:, None, :], height * width)
    index = cached_index
    if slab is not None:
        _, _, slab_h, slab_w = slab.shape
        parts.append(slab.permute(0, 2, 3, 1).reshape(batch * slab_h * slab_w, channels))
        slab_row, slab_col = rows - slab_top[:, None], cols - slab_left[:, None]
        in_slab = (
            ((slab_row >= 0) & (slab_row < slab_h))[:, :, None] & ((slab_col >= 0) & (slab_col < slab_w))[:, None, :]
        ) & in_map
        first = height * width + 1 + torch.arange(batch, device=rows.device)[:, None, None] * (slab_h * slab_w)
        index = torch.where(in_slab, first + slab_row[:, :, None] * slab_w + slab_col[:, None, :], cached_index)
    source = torch.cat(parts)
    shape = (batch, rows.shape[1], cols.shape[1], channels)
    values = source.index_select(0, index.reshape(-1)).view(shape)
    if change_only:
        values = values - source.index_select(0, cached_index.reshape(-1)).view(shape)
    return values.permute(0, 3, 1, 2)


@dataclass
class _Clean:
    """One occlusion job: the unoccluded pass (the layers in order, the image ``(1, 3, H, W)``,
    every layer's output) and the occluder (side ``window``, value ``fill`` ``(3,)``), with the
    feature map to sum (``channel`` of the layer at ``layer_index``, or none)."""

    children: list[nn.Module]
    image: torch.Tensor
    outputs: list[torch.Tensor]
    window: int
    fill: torch.Tensor
    layer_index: int | None = None
    channel: int | None = None


def _plan(clean: _Clean, rows: torch.Tensor, cols: torch.Tensor) -> tuple[list[_Step], int]:
    """Incremental steps for occluders at ``rows`` x ``cols``, and the first child run in full."""
    children, image, outputs, window = clean.children, clean.image, clean.outputs, clean.window
    changed_rows = _Region(rows, rows + window - 1, rows, window)
    changed_cols = _Region(cols, cols + window - 1, cols, window)
    steps: list[_Step] = []
    for index, module in enumerate(children):
        before = image if index == 0 else outputs[index - 1]
        after = outputs[index]
        if before.ndim != 4 or after.ndim != 4:
            return steps, index
        if isinstance(module, _POINTWISE_LAYERS) and before.shape == after.shape:
            steps.append(_Step(index, module, "pointwise", changed_rows, changed_cols, changed_rows, changed_cols))
            continue
        geometry = _window_geometry(module)
        if geometry is None:
            return steps, index
        kernel, stride, padding, dilation = geometry
        size_out = after.shape[-2:]
        rows_out = _next_region(changed_rows, size_out[0], kernel[0], stride[0], padding[0], dilation[0])
        cols_out = _next_region(changed_cols, size_out[1], kernel[1], stride[1], padding[1], dilation[1])
        limit = _FULL_FRACTION * size_out[0] * size_out[1]
        area_in, area_out = changed_rows.size * changed_cols.size, rows_out.size * cols_out.size
        linear = isinstance(module, nn.Conv2d) and module.stride == (1, 1) and module.groups == 1
        step = _Step(index, module, "direct", rows_out, cols_out, changed_rows, changed_cols)
        if linear and area_in * _DELTA_GAIN <= area_out and area_in <= limit:
            assert isinstance(module, nn.Conv2d)
            step.kind = "delta"
            step.transposed_weight = module.weight.flip(2, 3).transpose(0, 1).contiguous()
            shift = [d * (k - 1) - p for k, p, d in zip(kernel, padding, dilation)]
            step.shift = (shift[0], shift[1])
        elif area_out <= limit:
            crop = [
                (n - 1) * s + d * (k - 1) + 1
                for n, s, d, k in zip((rows_out.size, cols_out.size), stride, dilation, kernel)
            ]
            step.crop_size = (crop[0], crop[1])
            step.stride, step.padding = stride, padding
            step.pad_value = 0.0 if isinstance(module, nn.Conv2d) else float("-inf")
        else:
            return steps, index
        steps.append(step)
        changed_rows, changed_cols = rows_out, cols_out
    return steps, len(children)


def _run_direct(module: nn.Module, crop: torch.Tensor) -> torch.Tensor:
    """A conv or max pool on an explicitly padded crop."""
    if isinstance(module, nn.Conv2d):
        return F.conv2d(crop, module.weight, module.bias, module.stride, 0, module.dilation, module.groups)
    assert isinstance(module, nn.MaxPool2d)
    return F.max_pool2d(crop, module.kernel_size, module.stride, 0, module.dilation)


def _occluded_forward(
    clean: _Clean,
    steps: list[_Step],
    full_from: int,
    row_index: torch.Tensor,
    col_index: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(B, K)`` and the summed ``channel`` of layer ``layer_index`` ``(B,)`` for a batch.

    ``row_index``/``col_index`` ``(B,)`` pick each occluder's top-left corner from ``rows``
    and ``cols``. The state is a slab ``(B, C, h, w)`` at ``(top[b], left[b])``: the layer's
    output in that box for each occluder (outside it, the output equals the cached one).
    """
    children, image, outputs = clean.children, clean.image, clean.outputs
    window, fill, layer_index, channel = clean.window, clean.fill, clean.layer_index, clean.channel
    batch = row_index.shape[0]
    device = rows.device
    slab = fill.view(1, 3, 1, 1).expand(batch, 3, window, window)
    top, left = rows[row_index], cols[col_index]
    layer_sum = None

    def cached_output(index: int) -> torch.Tensor:
        return image[0] if index < 0 else outputs[index][0]

    def box(start: torch.Tensor, size: int) -> torch.Tensor:
        return start[:, None] + torch.arange(size, device=device)

    def full_map(index: int, channels: slice) -> torch.Tensor:
        """Output ``index`` (the image for -1) for every occluder, in full."""
        cached = cached_output(index)[channels]
        every_row = torch.arange(cached.shape[1], device=device).expand(batch, -1)
        every_col = torch.arange(cached.shape[2], device=device).expand(batch, -1)
        return _gather(cached, slab[:, channels], top, left, every_row, every_col, float("nan"))

    for step in steps:
        module = step.module
        if step.kind == "pointwise":
            slab = module(slab.clone() if getattr(module, "inplace", False) else slab)
        elif step.kind == "direct":
            out_top, out_left = step.rows.top[row_index], step.cols.top[col_index]
            row_box = box(out_top * step.stride[0] - step.padding[0], step.crop_size[0])
            col_box = box(out_left * step.stride[1] - step.padding[1], step.crop_size[1])
            crop = _gather(cached_output(step.index - 1), slab, top, left, row_box, col_box, step.pad_value)
            slab, top, left = _run_direct(module, crop), out_top, out_left
        else:
            in_top, in_left = step.input_rows.top[row_index], step.input_cols.top[col_index]
            row_box, col_box = box(in_top, step.input_rows.size), box(in_left, step.input_cols.size)
            change = _gather(
                cached_output(step.index - 1), slab, top, left, row_box, col_box, math.nan, change_only=True
            )
            assert isinstance(module, nn.Conv2d) and step.transposed_weight is not None
            output_change = F.conv_transpose2d(change, step.transposed_weight, dilation=module.dilation)
            top, left = in_top - step.shift[0], in_left - step.shift[1]
            slab = output_change + _gather(
                cached_output(step.index),
                None,
                top,
                left,
                box(top, output_change.shape[2]),
                box(left, output_change.shape[3]),
                0.0,
            )
        if step.index == layer_index and channel is not None:
            layer_sum = full_map(step.index, slice(channel, channel + 1)).sum(dim=(1, 2, 3))

    x = full_map(steps[-1].index if steps else -1, slice(None))
    for index in range(full_from, len(children)):
        module = children[index]
        # x is this function's own tensor, so a plain ReLU may overwrite it (saves a copy).
        x = F.relu(x, inplace=True) if type(module) is nn.ReLU else module(x)
        if index == layer_index:
            layer_sum = x[:, channel].reshape(batch, -1).sum(dim=1)
    return x, layer_sum


#: Occluder positions are processed in bands of at most this many occluder rows (all
#: columns, as far as ``batch_size`` allows): a band's slabs are as large as its largest member
#: needs, and occluders near the top or bottom change less of the deeper layers, so bands
#: recompute less than the whole grid at once, while staying large batches.
_BAND_ROWS = 8


def _tiles(num_rows: int, num_cols: int, batch_size: int) -> list[tuple[slice, slice]]:
    """Row and column ranges of the occluder grid, each tile at most ``batch_size`` positions."""
    tile_cols = min(num_cols, batch_size)
    tile_rows = min(num_rows, _BAND_ROWS, batch_size // tile_cols)
    return [
        (slice(top, top + tile_rows), slice(left, left + tile_cols))
        for top in range(0, num_rows, tile_rows)
        for left in range(0, num_cols, tile_cols)
    ]


def _occlude_tile(clean: _Clean, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Softmax ``(r, c, K)`` and summed ``channel`` of layer ``layer_index`` ``(r, c)`` for every
    occluder with top-left corner in ``rows`` x ``cols``."""
    steps, full_from = _plan(clean, rows, cols)
    position = torch.arange(rows.numel() * cols.numel(), device=rows.device)
    logits, layer_sum = _occluded_forward(
        clean,
        steps,
        full_from,
        position // cols.numel(),
        position % cols.numel(),
        rows,
        cols,
    )
    grid = (rows.numel(), cols.numel())
    probabilities = logits.softmax(dim=1).float().view(*grid, -1)
    return probabilities, None if layer_sum is None else layer_sum.float().view(grid)


def occlusion_map(
    model: nn.Module,
    image: torch.Tensor,
    window: int,
    stride: int,
    *,
    fill: float | Sequence[float] | torch.Tensor = 0.0,
    target: int | None = None,
    layer: str | None = "conv5",
    channel: int | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> OcclusionResult:
    """Slide a ``window`` x ``window`` occluder over ``image`` and record what the model sees.

    Args:
        model: a flat model in eval mode (:mod:`course_utils.layers`, e.g.
            :class:`~course_utils.models.ZFNet`) returning ``(N, num_classes)`` logits.
        image: ``(3, H, W)`` normalized float image.
        window, stride: occluder side and step in pixels (grid: see the module docstring).
        fill: occluder value in normalized units, a float or 3 per-channel values; ``0.0``
            is the dataset mean (the paper's grey square).
        target: class for :attr:`OcclusionResult.probability`; ``None`` takes the class
            the model predicts for the clean image.
        layer: layer whose feature map is summed (panel b); ``None`` skips it.
        channel: feature map of ``layer``; ``None`` takes the strongest on the clean image
            (the one holding the largest activation).
        batch_size: occluded images per forward pass (memory cap); results do not depend on it.
        progress: show a progress bar over the batches.

    Returns:
        :class:`OcclusionResult` with ``(R, C)`` maps over the occluder grid.
    """
    check_eval_mode(model)
    check_float_images(image, batched=False)
    check_images(model, image[None])
    height, width = image.shape[-2:]
    window, stride = _check_window(window, stride, (height, width))
    batch_size = check_positive_int(batch_size, "batch_size", "occluded images per forward pass")
    occluder = check_fill(fill, "fill").to(image)
    path = layer_path(model, last_layer(model))
    check_standard_layers(path)
    names = [name for name, _ in path]
    children = [module for _, module in path]
    layer_index = None
    if layer is not None:
        layer_path(model, layer)  # a clear error listing the valid names
        layer_index = names.index(layer)

    rows = occluder_positions(height, window, stride)
    cols = occluder_positions(width, window, stride)
    with torch.no_grad():
        image = image.detach()[None]
        recording = record_forward(model, image, path, keep=names)
        outputs = [recording.outputs[name] for name in names]
        logits = outputs[-1]
        if logits.ndim != 2:
            raise ValueError(f"model must return (N, num_classes) logits, got shape {tuple(logits.shape)}")
        clean_probabilities = logits.softmax(dim=1)[0]
        num_classes = clean_probabilities.shape[0]
        if target is None:
            target = int(clean_probabilities.argmax())
        else:
            target = check_index(target, "target", num_classes, "the model's classes")
        clean_activation = None
        if layer_index is not None:
            feature = outputs[layer_index][0]
            maps = feature.reshape(feature.shape[0], -1)
            if channel is None:
                channel = int(maps.max(dim=1).values.argmax())
            else:
                channel = check_index(channel, "channel", maps.shape[0], f"layer {layer!r}'s channels")
            clean_activation = float(maps[channel].sum())

        num_rows, num_cols = rows.numel(), cols.numel()
        probabilities = torch.empty(num_rows, num_cols, num_classes)
        activation = torch.empty(num_rows, num_cols) if layer_index is not None else None
        clean = _Clean(children, image, outputs, window, occluder, layer_index, channel)
        for tile_rows, tile_cols in progress_bar(
            _tiles(num_rows, num_cols, batch_size), desc="occlusion", progress=progress
        ):
            tile_probabilities, tile_activation = _occlude_tile(
                clean, rows[tile_rows].to(image.device), cols[tile_cols].to(image.device)
            )
            probabilities[tile_rows, tile_cols] = tile_probabilities.cpu()
            if activation is not None and tile_activation is not None:
                activation[tile_rows, tile_cols] = tile_activation.cpu()

    return OcclusionResult(
        rows=rows,
        cols=cols,
        window=window,
        stride=stride,
        image_size=(height, width),
        target=int(target),
        probabilities=probabilities,
        unoccluded_probabilities=clean_probabilities.float().cpu(),
        layer=layer,
        channel=channel,
        activation=activation,
        unoccluded_activation=clean_activation,
    )
