"""The course's input contract: one validator for every entry point.

Every analysis function checks its arguments here before it touches the model, so bad input
gets the same clear error everywhere (naming the argument and the fix) instead of a raw torch
trace or, worse, a silently wrong picture. Conventions:

* images are normalized float tensors ``(N, C, H, W)`` (one image: ``(C, H, W)``) with the
  model's channels, dtype and device, and finite values;
* a model is analysed in eval mode, every submodule included: nothing here switches modes
  behind the caller's back (dropout and batch norm would change what is measured);
* counts and sizes are Python integers (``True``, ``2.5`` and ``"3"`` are refused, never
  truncated);
* fills and baselines are finite float values in normalized units.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "check_eval_mode",
    "check_fill",
    "check_float_images",
    "check_images",
    "check_index",
    "check_indices",
    "check_positive_int",
    "check_selections",
    "check_units",
]


def check_float_images(images: Tensor, batched: bool = True, channels: int | None = 3) -> None:
    """Raise an error naming the fix unless ``images`` is a normalized float tensor:
    ``(N, C, H, W)`` when ``batched``, else one ``(C, H, W)`` image, with ``C == channels``
    (3: RGB; ``None`` accepts any)."""
    c = "C" if channels is None else channels
    name, shape, rank = ("images", f"(N, {c}, H, W)", 4) if batched else ("image", f"({c}, H, W)", 3)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(images).__name__}")
    if images.ndim != rank:
        hint = ""
        if batched and images.ndim == 3:
            hint = "; add a batch dimension with image[None]"
        elif not batched and images.ndim == 4:
            hint = "; pass one image, e.g. images[0]"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(images.shape)}{hint}")
    found = images.shape[-3]
    if channels is not None and found != channels:
        expand = f"expand(-1, {channels}, -1, -1)" if batched else f"expand({channels}, -1, -1)"
        hint = (
            f" (grayscale); repeat it with {name}.{expand} and normalize with the RGB statistics"
            if found == 1 and channels == 3
            else ""
        )
        kind = " (RGB)" if channels == 3 else ""
        raise ValueError(f"{name} must have {channels} channel{'s' if channels != 1 else ''}{kind}, got {found}{hint}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be normalized float tensors, got {images.dtype}; use dataset.normalize(...)")


def check_images(model: nn.Module, images: Tensor, check_finite: bool = True) -> None:
    """Raise a ``ValueError`` naming the fix unless ``images`` is a ``(N, C, H, W)`` float batch
    (:func:`check_float_images`) with the model's input channels, dtype and device, and
    (``check_finite``) finite values."""
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    check_float_images(images, channels=None if first_conv is None else first_conv.in_channels)
    parameter = next(model.parameters(), None)
    if images.is_meta or (parameter is not None and parameter.is_meta):
        raise ValueError(
            "the images or the model are on the meta device (shapes without values); load real weights "
            "(e.g. model.to_empty(device='cpu') and load_state_dict) and pass real images"
        )
    if parameter is not None and images.dtype != parameter.dtype:
        raise ValueError(
            f"images are {images.dtype} but the model is {parameter.dtype}; use images.to({parameter.dtype})"
        )
    if parameter is not None and images.device != parameter.device:
        raise ValueError(
            f"images are on {images.device} but the model is on {parameter.device}; "
            f"use images.to({str(parameter.device)!r})"
        )
    # One reduction: NaN or inf anywhere makes the sum non-finite.
    if check_finite and not torch.isfinite(images.sum()):
        raise ValueError("images contain NaN or infinite values")


def check_eval_mode(model: nn.Module) -> None:
    """Refuse a model with any submodule in training mode (dropout and batch norm would change
    the pass); the error names the first such submodule."""
    for name, module in model.named_modules():
        if module.training:
            where = "the model" if not name else f"submodule {name!r} ({type(module).__name__}) of the model"
            raise ValueError(
                f"{where} is in training mode (dropout and batch norm behave differently there); "
                "call model.eval() first"
            )


def _integer(value: object) -> int | None:
    """``value`` as an ``int`` if it is an integer (Python, numpy or 0-d torch; not ``bool``), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_positive_int(value: object, name: str, meaning: str = "") -> int:
    """``value`` as an ``int`` if it is an integer >= 1 (Python, numpy or 0-d torch integers;
    ``bool`` and non-integral numbers are refused, never truncated); otherwise a ``ValueError``
    naming ``name`` (and what it means, e.g. ``"occluder side in pixels"``)."""
    number = _integer(value)
    if number is None or number < 1:
        what = f" ({meaning})" if meaning else ""
        raise ValueError(f"{name} must be a positive integer{what}, got {value!r}")
    return number


def check_index(value: object, name: str, size: int | None, what: str) -> int:
    """``value`` as an ``int`` in ``0 .. size - 1`` (an integer, never truncated); otherwise a
    ``ValueError`` naming ``name`` and the valid range of ``what`` (e.g. ``"the model's classes"``).
    ``size=None`` checks only that it is an integer (when the range is known later)."""
    number = _integer(value)
    if number is None:
        raise ValueError(f"{name} must be an integer index into {what}, got {value!r}")
    if size is not None and not 0 <= number < size:
        raise ValueError(f"{name} {number} is out of range: {what} are 0..{size - 1}")
    return number


def check_indices(values: object, name: str, size: int, what: str) -> torch.Tensor:
    """``values`` (a sequence or tensor of integers) as a ``(n,)`` int64 tensor of indices in
    ``0 .. size - 1``; floats are refused (never truncated), an index out of range names it."""
    tensor = torch.as_tensor(values)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be integers (indices into {what}), got {tensor.dtype} values {values!r}")
    tensor = tensor.to(torch.long).reshape(-1)
    bad = (tensor < 0) | (tensor >= size)
    if bad.any():
        raise ValueError(f"{name}: {int(tensor[bad][0])} is out of range: {what} are 0..{size - 1}")
    return tensor


def check_fill(value: float | Sequence[float] | Tensor, name: str, channels: int = 3) -> Tensor:
    """A finite float value (or ``channels`` per-channel values) in normalized units, as a
    ``(channels,)`` float64 tensor; a ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise ValueError(
                f"{name} must be float values in normalized units, got a {value.dtype} tensor; "
                "normalize it like the images (0.0 is the dataset mean)"
            )
        values = value.detach().to("cpu", torch.float64).flatten()
    elif isinstance(value, (bool, str)) or not isinstance(value, (numbers.Real, Sequence)):
        raise ValueError(f"{name} must be a float or {channels} per-channel floats, got {type(value).__name__}")
    else:
        items = [value] if isinstance(value, numbers.Real) else list(value)
        if not all(isinstance(item, numbers.Real) and not isinstance(item, bool) for item in items):
            raise ValueError(f"{name} must be a float or {channels} per-channel floats, got {value!r}")
        values = torch.tensor([float(item) for item in items], dtype=torch.float64)
    if values.numel() == 1:
        values = values.expand(channels).clone()
    if values.numel() != channels:
        raise ValueError(f"{name} must be a float or {channels} per-channel values, got {values.numel()} values")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} must be finite, got {values.tolist()}")
    return values


def check_selections(selections: Tensor, num_images: int) -> Tensor:
    """The ``(S, 4)`` int64 CPU rows ``(image_index, channel, y, x)``, image indices checked against
    ``num_images``; a ``ValueError`` naming the problem otherwise."""
    selections = torch.as_tensor(selections)
    if selections.ndim != 2 or selections.shape[1] != 4:
        raise ValueError(
            f"selections must be an (S, 4) integer tensor of (image_index, channel, y, x) rows, "
            f"got shape {tuple(selections.shape)}"
        )
    if selections.is_floating_point() or selections.dtype == torch.bool:
        raise ValueError(f"selections must be integers (a LongTensor), got {selections.dtype}")
    selections = selections.long().cpu()
    bad = (selections[:, 0] < 0) | (selections[:, 0] >= num_images)
    if bad.any():
        raise ValueError(f"image index {int(selections[bad][0, 0])} is out of range for {num_images} images")
    return selections


def check_units(layer: str, output_shape: torch.Size, selections: Tensor) -> None:
    """Check channels and locations of ``selections`` against the layer output shape."""
    channels = output_shape[1]
    bad = (selections[:, 1] < 0) | (selections[:, 1] >= channels)
    if bad.any():
        raise ValueError(
            f"channel {int(selections[bad][0, 1])} is out of range: layer {layer!r} has "
            f"{channels} channels (0..{channels - 1})"
        )
    height, width = (output_shape[2], output_shape[3]) if len(output_shape) == 4 else (1, 1)
    bad = (selections[:, 2] < 0) | (selections[:, 2] >= height) | (selections[:, 3] < 0) | (selections[:, 3] >= width)
    if bad.any():
        y, x = (int(v) for v in selections[bad][0, 2:])
        where = f"a {height}x{width} map" if len(output_shape) == 4 else "a vector (use y = x = 0)"
        raise ValueError(f"location (y={y}, x={x}) is outside layer {layer!r}'s output, {where}")
