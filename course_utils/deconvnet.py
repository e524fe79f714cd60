"""The Zeiler & Fergus deconvnet: project one activation back to pixel space.

To look at one activation of a named layer (``"conv5"``, ``"relu3"``, ``"pool2"``, ``"fc6"``...),
every other activation of that layer is set to zero and the signal travels down the layers
below in reverse order:

* **unpool** (:func:`unpool`): each value goes back to the input position that was the
  maximum of its pooling window in the forward pass (the *switches*). Pooling windows of the
  paper overlap (3x3, stride 2); when two windows chose the same input position, both values
  are **added** there. This equals autograd's max-pool backward; ``nn.MaxUnpool2d`` would
  overwrite instead and keep only one of them.
* **rectify**: ``relu`` of the signal, whatever the sign of the forward activation was.
* **filter** (:func:`filter_transposed`): a transposed convolution with the *same* weights,
  stride, padding and dilation as the forward convolution, no bias, with the output padding
  that restores the exact input size.

Other layers on the way down: ``nn.Linear`` multiplies by the transposed weight (no bias),
``nn.Flatten`` reshapes back, ``nn.Dropout`` (eval mode) and ``nn.Identity`` pass the signal
through, ``nn.AdaptiveAvgPool2d`` passes it through when its output size equals its input
size (torchvision's AlexNet at 224x224) and is refused otherwise. ``nn.LocalResponseNorm``
is treated as the identity, as in Zeiler's deconvnet, so a projection through a normalization
layer is *not* a gradient there. ``nn.BatchNorm2d`` (eval mode, running statistics) is an affine
map per channel; like a convolution it goes back through its linear part transposed, i.e. a
multiplication by ``weight / sqrt(running_var + eps)`` without the shift. Any other layer
(``nn.Sigmoid``, ``nn.Tanh``, average pooling, ...) is refused with an error that names it.

Models must be *flat* and in eval mode, and are walked the one way of :mod:`course_utils.layers`
(named children in order, hooks only during the call, each layer checked to receive the previous
layer's unchanged output, so an operation hidden in ``forward()`` raises an error instead of
giving a wrong picture); every ReLU an ``nn.ReLU`` module used once. In-place ReLUs
(torchvision) are fine: nothing is recorded after the selected layer, and the model's modules
and flags are never changed.

Batched use: :func:`project` takes many ``(image_index, channel, y, x)`` selections at once,
runs one forward pass per distinct image and one reverse pass per chunk of selections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import TopK
from .checks import check_eval_mode, check_images, check_index, check_positive_int, check_selections, check_units
from .data.core import ImageTensorDataset
from .layers import (
    STANDARD_LAYERS,
    Recording,
    check_standard_layers,
    layer_outputs,
    layer_path,
    pair,
    record_forward,
    unit_values,
)
from .progress import progress_bar

__all__ = [
    "REVERSIBLE_LAYERS",
    "REVERSE_PASS_BYTES",
    "project",
    "project_activation",
    "project_top_activations",
    "unpool",
    "filter_transposed",
    "check_reversible",
    "check_selection_call",
]

UnitValue = Literal["activation", "one"]

#: Layer types the deconvnet can walk back through.
REVERSIBLE_LAYERS: tuple[type[nn.Module], ...] = (*STANDARD_LAYERS, nn.Identity)


#: Memory the reverse pass may give one intermediate map of a chunk of selections (bytes).
REVERSE_PASS_BYTES = 256 * 2**20


# --------------------------------------------------------------------------------------------
# The three reverse operations
# --------------------------------------------------------------------------------------------


def unpool(signal: Tensor, switches: Tensor, output_size: Sequence[int]) -> Tensor:
    """Put every value of ``signal`` back at the input position its pooling window chose.

    Args:
        signal: ``(N, C, h, w)`` values at the pooled positions.
        switches: ``(N, C, h, w)`` int64 flat indices ``y * W + x`` into the input plane, as
            returned by ``F.max_pool2d(..., return_indices=True)``.
        output_size: ``(H, W)`` of the pooling layer's input.

    Returns:
        ``(N, C, H, W)``: zero except at the switch positions. When several windows share one
        switch (overlapping pooling), their values are summed there (autograd's max-pool
        backward does the same; ``nn.MaxUnpool2d`` keeps only one of them).
    """
    if signal.ndim != 4 or switches.shape != signal.shape:
        raise ValueError(
            f"signal and switches must both be (N, C, h, w) with the same shape, got "
            f"{tuple(signal.shape)} and {tuple(switches.shape)}"
        )
    if switches.dtype != torch.int64:
        raise ValueError(f"switches must be int64 flat indices (y * W + x), got {switches.dtype}")
    height, width = (int(size) for size in output_size)
    n, c = signal.shape[:2]
    unpooled = signal.new_zeros(n, c, height * width)
    unpooled.scatter_add_(2, switches.flatten(2), signal.flatten(2))
    return unpooled.view(n, c, height, width)


def filter_transposed(signal: Tensor, conv: nn.Conv2d, output_size: Sequence[int]) -> Tensor:
    """Filter ``signal`` with the transposed filters of ``conv`` (no bias).

    Args:
        signal: ``(N, out_channels, h, w)`` at the convolution's output.
        conv: the forward convolution; its weight, stride, padding, dilation and groups are used.
        output_size: ``(H, W)`` of the convolution's input; the output padding is chosen so the
            result has exactly this size (strided convolutions lose the remainder otherwise).

    Returns:
        ``(N, in_channels, H, W)``.
    """
    _check_conv_reversible("conv", conv)
    kernel = conv.weight.shape[-2:]
    output_padding = []
    for size, out, stride, pad, dil, k in zip(
        output_size, signal.shape[-2:], conv.stride, conv.padding, conv.dilation, kernel
    ):
        extra = int(size) - ((out - 1) * stride - 2 * pad + dil * (k - 1) + 1)
        if not 0 <= extra < max(stride, dil):
            raise ValueError(
                f"a {out}-wide convolution output cannot come from a {size}-wide input with "
                f"kernel {k}, stride {stride}, padding {pad}, dilation {dil}"
            )
        output_padding.append(extra)
    return F.conv_transpose2d(
        signal,
        conv.weight,
        None,
        conv.stride,
        pair(conv.padding),  # type: ignore[arg-type]  # numeric: checked by _check_conv_reversible
        tuple(output_padding),
        conv.groups,
        conv.dilation,
    )


def _check_conv_reversible(name: str, conv: nn.Conv2d) -> None:
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ValueError(
            f"layer {name!r}: the deconvnet supports convolutions with numeric zero padding only "
            f"(got padding={conv.padding!r}, padding_mode={conv.padding_mode!r})"
        )


# --------------------------------------------------------------------------------------------
# The reverse pass
# --------------------------------------------------------------------------------------------


def check_selection_call(
    model: nn.Module, images: Tensor, layer: str, selections: Tensor, unit_value: str
) -> tuple[list[tuple[str, nn.Module]], Tensor]:
    """The checks every projection of selected units starts with (:func:`project`,
    :func:`course_utils.attribution.attribute`): ``unit_value``, eval mode, the images, the
    layer; returns ``(path to layer, selections as (S, 4) int64)``."""
    if unit_value not in ("activation", "one"):
        raise ValueError(f"unit_value must be 'activation' or 'one', got {unit_value!r}")
    check_eval_mode(model)
    check_images(model, images)
    path = layer_path(model, layer)
    check_standard_layers(path)
    return path, check_selections(selections, images.shape[0])


def check_reversible(path: list[tuple[str, nn.Module]]) -> None:
    """Refuse a path with a layer the deconvnet cannot walk back through, naming it."""
    check_standard_layers(path)
    for name, module in path:
        if not isinstance(module, REVERSIBLE_LAYERS):
            supported = ", ".join(t.__name__ for t in REVERSIBLE_LAYERS)
            raise ValueError(
                f"layer {name!r} is a {type(module).__name__}, which the deconvnet cannot walk "
                f"back through (supported: {supported}). Project from a layer below {name!r}."
            )
        if isinstance(module, nn.Conv2d):
            _check_conv_reversible(name, module)
        if isinstance(module, nn.MaxPool2d) and module.return_indices:
            raise ValueError(
                f"layer {name!r}: MaxPool2d(return_indices=True) returns a tuple; use return_indices=False"
            )
        if isinstance(module, nn.BatchNorm2d) and module.running_var is None:
            raise ValueError(
                f"layer {name!r}: BatchNorm2d without running statistics normalizes with batch "
                "statistics even in eval mode; the deconvnet needs track_running_stats=True"
            )


def _reverse(path: list[tuple[str, nn.Module]], recording: Recording, signal: Tensor, image_index: Tensor) -> Tensor:
    """Walk ``signal`` ``(S, ...)`` at the last layer's output down to the input ``(S, 3, H, W)``.

    ``image_index`` ``(S,)`` says which recorded image each row belongs to (for the switches).
    """
    for name, module in reversed(path):
        input_shape = recording.input_shapes[name]
        if isinstance(module, nn.Conv2d):
            signal = filter_transposed(signal, module, input_shape[-2:])
        elif isinstance(module, nn.MaxPool2d):
            signal = unpool(signal, recording.switches[name][image_index], input_shape[-2:])
        elif isinstance(module, nn.ReLU):
            signal = F.relu(signal)
        elif isinstance(module, nn.Linear):
            signal = signal @ module.weight
        elif isinstance(module, nn.Flatten):
            signal = signal.reshape(signal.shape[0], *input_shape[1:])
        elif isinstance(module, nn.BatchNorm2d):
            assert module.running_var is not None  # checked by check_reversible
            scale = torch.rsqrt(module.running_var + module.eps)
            if module.weight is not None:
                scale = scale * module.weight
            signal = signal * scale.view(1, -1, 1, 1)
        elif isinstance(module, nn.AdaptiveAvgPool2d) and signal.shape[-2:] != input_shape[-2:]:
            raise ValueError(
                f"layer {name!r} averages a {tuple(input_shape[-2:])} map down to "
                f"{tuple(signal.shape[-2:])}; the deconvnet passes adaptive pooling through only when "
                "the sizes are equal. Use the model's native input size (224 for AlexNet/VGG) or "
                f"project from a layer below {name!r}."
            )
        # LocalResponseNorm (identity, as Zeiler), Dropout (eval), Identity, same-size
        # AdaptiveAvgPool2d: the signal passes through unchanged.
    return signal


def _chunks_by_image(selections: Tensor, batch_size: int):
    """Yield ``(selection rows, distinct image indices, local image index per row)`` with at
    most ``batch_size`` distinct images per chunk; rows are sorted by image."""
    order = torch.argsort(selections[:, 0], stable=True)
    distinct, counts = torch.unique_consecutive(selections[order, 0], return_counts=True)
    ends = torch.cumsum(counts, 0)
    for start in range(0, len(distinct), batch_size):
        stop = min(start + batch_size, len(distinct))
        row_start = int(ends[start - 1]) if start else 0
        rows = order[row_start : int(ends[stop - 1])]
        local = torch.repeat_interleave(torch.arange(stop - start), counts[start:stop])
        yield rows, distinct[start:stop], local


def project(
    model: nn.Module,
    images: Tensor,
    layer: str,
    selections: Tensor,
    *,
    unit_value: UnitValue = "activation",
    batch_size: int = 64,
    progress: bool = True,
) -> Tensor:
    """Project selected activations of ``layer`` back to pixel space with the deconvnet.

    Args:
        model: a flat model in eval mode (see the module docstring).
        images: ``(N, 3, H, W)`` normalized float images.
        layer: the name of the layer whose output is projected (``"conv5"``, ``"relu5"``...).
        selections: ``(S, 4)`` integer rows ``(image_index, channel, y, x)``; for a layer with
            vector output (``fc6``...) use ``y = x = 0``.
        unit_value: the value placed at the selected unit before the reverse pass: its
            ``"activation"`` (the paper) or ``"one"`` (a unit impulse, as in Captum). For a
            positive activation the two differ only by that factor.
        batch_size: at most this many distinct images per forward pass and selections per
            reverse pass (fewer selections when one of their maps would exceed
            :data:`REVERSE_PASS_BYTES`, e.g. VGG at 224x224).
        progress: show a progress bar over the chunks of images.

    Returns:
        ``(S, 3, H, W)``: projection ``s`` is the image-space reconstruction of selection ``s``.
    """
    batch_size = check_positive_int(batch_size, "batch_size", "images per forward pass")
    path, selections = check_selection_call(model, images, layer, selections, unit_value)
    check_reversible(path)
    projections = images.new_zeros(len(selections), *images.shape[1:])
    chunks = list(_chunks_by_image(selections, batch_size))
    with torch.no_grad():
        for number, (rows, distinct, local) in enumerate(
            progress_bar(chunks, desc=f"deconvnet {layer}", progress=progress)
        ):
            recording = record_forward(model, images[distinct.to(images.device)], path, record_switches=True)
            output = recording.output
            if number == 0:
                check_units(layer, output.shape, selections)
            largest_map = max(math.prod(shape[1:]) for shape in recording.input_shapes.values())
            rows_per_pass = max(1, min(batch_size, REVERSE_PASS_BYTES // (largest_map * output.element_size())))
            device_local = local.to(output.device)
            for start in range(0, len(rows), rows_per_pass):
                part = slice(start, start + rows_per_pass)
                chosen, image_index = selections[rows[part]].to(output.device), device_local[part]
                signal = torch.zeros((len(chosen), *output.shape[1:]), dtype=output.dtype, device=output.device)
                values = unit_values(output, image_index, chosen) if unit_value == "activation" else 1.0
                position = (torch.arange(len(chosen), device=output.device), *chosen[:, 1:].T)
                signal[position[: output.ndim]] = values
                projections[rows[part].to(images.device)] = _reverse(path, recording, signal, image_index)
    return projections


def project_activation(
    model: nn.Module,
    image: Tensor,
    layer: str,
    channel: int,
    location: tuple[int, int] | None = None,
    *,
    unit_value: UnitValue = "activation",
) -> Tensor:
    """Project one activation of one image: ``(3, H, W)`` from an image ``(3, H, W)`` or ``(1, 3, H, W)``.

    ``location`` is ``(y, x)`` in the layer's output; ``None`` takes the strongest location of
    ``channel`` in this image (ignored for vector layers such as ``fc6``).
    """
    images = image[None] if isinstance(image, Tensor) and image.ndim == 3 else image
    if isinstance(images, Tensor) and images.ndim == 4 and images.shape[0] != 1:
        raise ValueError(f"project_activation takes one image, got a batch of {images.shape[0]}; use project()")
    channel = check_index(channel, "channel", None, "a layer's channels")  # the range: check_units below
    if location is not None:
        if len(location) != 2:
            raise ValueError(f"location must be (y, x), got {location!r}")
        location = (
            check_index(location[0], "location y", None, "rows"),
            check_index(location[1], "location x", None, "columns"),
        )
    if location is None:
        output = layer_outputs(model, images, [layer])[layer]
        check_units(layer, output.shape, torch.tensor([[0, channel, 0, 0]]))
        if output.ndim == 4:
            flat_index = int(output[0, channel].argmax())
            location = divmod(flat_index, output.shape[-1])
        else:
            location = (0, 0)
    selection = torch.tensor([[0, channel, *location]])
    return project(model, images, layer, selection, unit_value=unit_value)[0]


def project_top_activations(
    model: nn.Module,
    images: Tensor | ImageTensorDataset,
    top: TopK,
    channels: Sequence[int] | Tensor | None = None,
    *,
    unit_value: UnitValue = "activation",
    batch_size: int = 64,
    progress: bool = True,
) -> Tensor:
    """Project the mined top activations of a layer (Fig. 2 of the paper).

    Args:
        model: the model the activations were mined from.
        images: the images ``top`` indexes into: a normalized ``(N, 3, H, W)`` tensor or an
            :class:`~course_utils.data.ImageTensorDataset` (only the needed images are normalized).
        top: a :class:`~course_utils.activations.TopK` from ``mine_top_activations``.
        channels: the channels to project (default: all).

    Returns:
        ``(len(channels), k, 3, H, W)``: projection ``[i, j]`` is the ``j``-th strongest
        activation of ``channels[i]``.
    """
    selections = top.selections(channels)
    if isinstance(images, Tensor):
        chosen_images = images
    elif isinstance(images, ImageTensorDataset):
        needed, dataset_to_needed = torch.unique(selections[:, 0], return_inverse=True)
        selections[:, 0] = dataset_to_needed
        chosen_images = images.normalize(images.images[needed])
        parameter = next(model.parameters(), None)
        if parameter is not None:
            chosen_images = chosen_images.to(device=parameter.device, dtype=parameter.dtype)
    else:
        raise TypeError(
            f"images must be a normalized (N, 3, H, W) tensor or an ImageTensorDataset, got {type(images).__name__}"
        )
    projections = project(
        model, chosen_images, top.layer, selections, unit_value=unit_value, batch_size=batch_size, progress=progress
    )
    return projections.view(-1, top.values.shape[1], *projections.shape[1:])
