"""The common wrong answers of each assignment, so that the grader can name a student's mistake.

Each :class:`Mistake` replaces one exercise of the solution with a typical wrong version (the
solution's other functions then call it, as a student's would). ``python -m
course_utils.homework references`` runs every check with each mistake in place and stores the
outputs that differ from the reference; when a student's output fails a check but matches one of
them, the grader's message names the mistake and says what to change, instead of only a
relative error. The wrong versions live here, on the instructor's side, never in the student
files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["MISTAKES", "Mistake"]


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer to ``function``: ``make(solution_module)`` returns the wrong
    function (it may call the solution's other functions); ``title`` and ``advice`` are what
    the grader tells the student."""

    function: str
    title: str
    advice: str
    make: Callable[[ModuleType], Callable[..., Any]]


def _mean_unpool(module: ModuleType) -> Callable[..., Any]:
    def unpool(signal, switches, input_size):
        spread = F.interpolate(signal, size=tuple(input_size), mode="nearest")
        return spread * (signal.shape[-2] * signal.shape[-1]) / (input_size[0] * input_size[1])

    return unpool


def _overwriting_unpool(module: ModuleType) -> Callable[..., Any]:
    def unpool(signal, switches, input_size):
        unpooled = signal.new_zeros(*signal.shape[:2], input_size[0] * input_size[1])
        return unpooled.scatter_(2, switches.flatten(2), signal.flatten(2)).view(*signal.shape[:2], *input_size)

    return unpool


def _deconv_without_relu(module: ModuleType) -> Callable[..., Any]:
    def deconv_step(signal, switches, weight, stride, padding, unpooled_size, output_size):
        unpooled = module.unpool(signal, switches, unpooled_size)
        kernel = weight.shape[-2:]
        extra = tuple(w - ((s - 1) * stride - 2 * padding + k) for w, s, k in zip(output_size, unpooled_size, kernel))
        return F.conv_transpose2d(unpooled, weight, stride=stride, padding=padding, output_padding=extra)

    return deconv_step


def _flipped_filters(module: ModuleType) -> Callable[..., Any]:
    solution = module.deconv_step

    def deconv_step(signal, switches, weight, stride, padding, unpooled_size, output_size):
        return solution(signal, switches, weight.flip(-2, -1), stride, padding, unpooled_size, output_size)

    return deconv_step


def _positions_one_short(module: ModuleType) -> Callable[..., Any]:
    def occluder_positions(size, window, stride):
        return torch.arange(0, size - window, stride, dtype=torch.long)

    return occluder_positions


def _occluder_one_too_large(module: ModuleType) -> Callable[..., Any]:
    def occlude(image, top, left, window, fill):
        occluded = image.clone()
        occluded[:, top : top + window + 1, left : left + window + 1] = fill
        return occluded

    return occlude


def _logits_map(module: ModuleType) -> Callable[..., Any]:
    def occlusion_map(model, image, window, stride, target, fill=0.0):
        rows = module.occluder_positions(image.shape[1], window, stride)
        cols = module.occluder_positions(image.shape[2], window, stride)
        batch = torch.stack([module.occlude(image, int(r), int(c), window, fill) for r in rows for c in cols])
        with torch.no_grad():
            return model(batch)[:, target].view(len(rows), len(cols))

    return occlusion_map


def _xy_centre(module: ModuleType) -> Callable[..., Any]:
    solution = module.mask_square

    def mask_square(image, centre, window, fill=0.0):
        return solution(image, (centre[1], centre[0]), window, fill)

    return mask_square


def _binary_signs(module: ModuleType) -> Callable[..., Any]:
    def sign_disagreement(a, b):
        return ((a > 0) != (b > 0)).double().mean().item()

    return sign_disagreement


def _unnormalised_hamming(module: ModuleType) -> Callable[..., Any]:
    def sign_disagreement(a, b):
        return float((torch.sign(a) != torch.sign(b)).sum().item())

    return sign_disagreement


def _no_padding(module: ModuleType) -> Callable[..., Any]:
    def receptive_field(layers):
        size, stride = 1, 1
        for kernel, layer_stride, _ in layers:
            size += (kernel - 1) * stride
            stride *= layer_stride
        return size, stride, 0

    return receptive_field


def _stride_not_compounded(module: ModuleType) -> Callable[..., Any]:
    def receptive_field(layers):
        size, stride, offset = 1, 1, 0
        for kernel, layer_stride, padding in layers:
            size += kernel - 1
            offset -= padding
            stride *= layer_stride
        return size, stride, offset

    return receptive_field


def _unclipped_box(module: ModuleType) -> Callable[..., Any]:
    def unit_box(layers, y, x, image_size):
        size, stride, offset = module.receptive_field(layers)
        top, left = y * stride + offset, x * stride + offset
        return top, left, top + size, left + size

    return unit_box


#: Per assignment, its common mistakes (at least three each).
MISTAKES: dict[str, tuple[Mistake, ...]] = {
    "hw1_deconv": (
        Mistake("unpool", "mean unpooling", "each value was spread over its whole window; put it only at its "
                "switch, the position of the window's maximum", _mean_unpool),
        Mistake("unpool", "overwriting at shared switches", "where two overlapping windows chose the same "
                "position their values must be added (scatter_add_), not overwritten (scatter_, nn.MaxUnpool2d)",
                _overwriting_unpool),
        Mistake("deconv_step", "missing rectification", "the unpooled signal goes through a ReLU before the "
                "transposed filters", _deconv_without_relu),
        Mistake("deconv_step", "flipped filters", "conv_transpose2d already uses the filters transposed; pass the "
                "forward convolution's weight as it is", _flipped_filters),
    ),
    "hw2_occlusion": (
        Mistake("occluder_positions", "last position missing (off by one)", "the occluder may start at "
                "size - window itself: the range ends at size - window + 1", _positions_one_short),
        Mistake("occlude", "occluder one pixel too large (off by one)", "rows top .. top + window - 1 are "
                "covered: the slice is top:top + window", _occluder_one_too_large),
        Mistake("occlusion_map", "logits instead of probabilities", "apply softmax over the classes before "
                "taking the target's column", _logits_map),
    ),
    "hw3_correspondence": (
        Mistake("mask_square", "centre read as (x, y)", "the centre is (y, x): the row first, then the column",
                _xy_centre),
        Mistake("sign_disagreement", "zero treated as a sign", "sign takes three values, -1, 0 and +1 "
                "(torch.sign): a zero and a negative value disagree", _binary_signs),
        Mistake("sign_disagreement", "Hamming distance not normalised", "divide the number of disagreeing "
                "positions by the vectors' length D", _unnormalised_hamming),
    ),
    "hw4_receptive_field": (
        Mistake("receptive_field", "padding ignored", "each layer's padding moves the first pixel seen by "
                "padding * (stride so far) to the left", _no_padding),
        Mistake("receptive_field", "stride not compounded", "a layer's kernel adds (kernel - 1) times the "
                "stride of all layers below it, not kernel - 1", _stride_not_compounded),
        Mistake("unit_box", "box not clipped to the image", "clip top and left at 0 and bottom and right at the "
                "image's height and width", _unclipped_box),
    ),
}
