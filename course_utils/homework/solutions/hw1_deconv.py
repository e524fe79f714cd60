"""Homework 1: switch unpooling and one deconvnet step.

Zeiler and Fergus look at what one activation of a convnet responds to by sending it back
down to the pixels with a *deconvnet*. The forward pass of a layer is

    x (N, C_in, H, W) -> conv (weight, stride, padding) -> ReLU -> max-pool -> (N, C_out, h, w)

and the deconvnet undoes it in reverse order, one layer at a time:

1. **unpool**: every value goes back to the position that was the maximum of its pooling
   window in the forward pass. Those positions, the *switches*, are recorded during the
   forward pass (`F.max_pool2d(..., return_indices=True)` gives them as flat indices
   `y * W + x` into each input plane).
2. **rectify**: ReLU of the signal, to keep it positive like the feature maps it stands for.
3. **filter**: a transposed convolution with the *same* filters as the forward convolution
   (no bias), which brings the signal to the size of the convolution's input.

The paper's pooling windows overlap (3x3 with stride 2): two windows can pick the same input
position, and then both of their values belong there, so they are **added**. (That is also
what autograd's max-pool backward does; `nn.MaxUnpool2d` keeps only one of them.)

You implement `unpool` (step 1) and `deconv_step` (steps 1 to 3). The checks use float64
tensors: keep the dtype of the inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from course_utils.homework import Check


def unpool(signal: Tensor, switches: Tensor, input_size: tuple[int, int]) -> Tensor:
    """Put every value of ``signal`` back at the input position its pooling window chose.

    Args:
        signal: ``(N, C, h, w)`` values at the pooled positions (any values, not necessarily
            the pooled maxima).
        switches: ``(N, C, h, w)`` int64 flat indices ``y * W + x`` into each ``(H, W)`` input
            plane, as returned by ``F.max_pool2d(..., return_indices=True)``.
        input_size: ``(H, W)``, the size of the pooling layer's input.

    Returns:
        ``(N, C, H, W)`` with the dtype of ``signal``: zero except at the switches; where
        several windows share one switch, the sum of their values.
    """
    # BEGIN SOLUTION
    # HINT: Every value of `signal` has one destination: its switch, a flat index into an H x W
    # HINT: plane of the same image and channel. Where do two values go when two windows chose the
    # HINT: same input position, and which tensor operation accumulates instead of overwriting?
    # HINT: Build the result flat per plane, keep the input's dtype, and check the shape.
    batch, channels = signal.shape[:2]
    height, width = input_size
    unpooled = signal.new_zeros(batch, channels, height * width)
    unpooled.scatter_add_(2, switches.flatten(2), signal.flatten(2))
    return unpooled.view(batch, channels, height, width)
    # END SOLUTION


def deconv_step(
    signal: Tensor,
    switches: Tensor,
    weight: Tensor,
    stride: int,
    padding: int,
    unpooled_size: tuple[int, int],
    output_size: tuple[int, int],
) -> Tensor:
    """One deconvnet layer: unpool with the switches, rectify, filter with the transposed filters.

    The forward pass was ``x -> F.conv2d(x, weight, stride=stride, padding=padding) -> ReLU ->
    max-pool``; this goes back from the pooled map to the size of ``x``.

    Args:
        signal: ``(N, C_out, h, w)`` at the max-pool's output.
        switches: ``(N, C_out, h, w)`` int64 switches of the max-pool (see :func:`unpool`).
        weight: ``(C_out, C_in, k, k)`` filters of the forward convolution (its bias is not used).
        stride, padding: of the forward convolution.
        unpooled_size: ``(Hc, Wc)``, the convolution's output size (= the max-pool's input size).
        output_size: ``(H, W)``, the convolution's input size.

    Returns:
        ``(N, C_in, H, W)``.
    """
    # BEGIN SOLUTION
    # HINT: The three steps of the module docstring, in that order. The transposed convolution is
    # HINT: the adjoint of the forward one, so it takes the forward layer's weight, stride and
    # HINT: padding unchanged. With a stride, several input sizes give the same output size:
    # HINT: compute the size the transposed convolution produces by default, compare it with the
    # HINT: size you need, and tell it the difference.
    rectified = torch.relu(unpool(signal, switches, unpooled_size))
    kernel = weight.shape[-2:]
    output_padding = tuple(
        wanted - ((size - 1) * stride - 2 * padding + k) for wanted, size, k in zip(output_size, unpooled_size, kernel)
    )
    return F.conv_transpose2d(rectified, weight, stride=stride, padding=padding, output_padding=output_padding)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# The grader's checks. Each one calls your function on inputs made here (seeded; the grader
# reads the stored copies from the reference data) and compares with the reference solution.
# ---------------------------------------------------------------------------------------------


def pooled_inputs(
    generator: torch.Generator,
    batch: int,
    channels: int,
    size: int,
    kernel: int,
    stride: int,
    padding: int = 0,
    shared_switches: bool = False,
) -> dict:
    """Inputs of :func:`unpool`: switches of a max-pool over a random map, a random signal.

    ``shared_switches`` puts large values at every 4th row and column from (2, 2), each the
    maximum of all the overlapping windows around it.
    """
    maps = torch.randn(batch, channels, size, size, generator=generator, dtype=torch.float64)
    if shared_switches:
        maps[..., 2::4, 2::4] += 10.0
    pooled, switches = F.max_pool2d(maps, kernel, stride, padding, return_indices=True)
    signal = torch.randn(pooled.shape, generator=generator, dtype=torch.float64)
    return {"signal": signal, "switches": switches, "input_size": (size, size)}


def layer_inputs(
    generator: torch.Generator,
    batch: int,
    in_channels: int,
    out_channels: int,
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    pool: tuple[int, int, int],
) -> dict:
    """Inputs of :func:`deconv_step`: a random image through conv -> ReLU -> max-pool ``pool =
    (kernel, stride, padding)``, and a random signal (with negative values) at the pool's output."""
    images = torch.randn(batch, in_channels, size, size, generator=generator, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels, kernel, kernel, generator=generator, dtype=torch.float64) / kernel
    features = torch.relu(F.conv2d(images, weight, stride=stride, padding=padding))
    pooled, switches = F.max_pool2d(features, *pool, return_indices=True)
    signal = torch.randn(pooled.shape, generator=generator, dtype=torch.float64)
    return {
        "signal": signal,
        "switches": switches,
        "weight": weight,
        "stride": stride,
        "padding": padding,
        "unpooled_size": tuple(features.shape[-2:]),
        "output_size": (size, size),
    }


CHECKS = [
    Check(
        "unpool",
        "non_overlapping_2x2_windows",
        lambda g: pooled_inputs(g, batch=1, channels=2, size=4, kernel=2, stride=2),
    ),
    Check(
        "unpool",
        "overlapping_3x3_windows_sharing_switches",
        lambda g: pooled_inputs(g, batch=1, channels=2, size=9, kernel=3, stride=2, shared_switches=True),
    ),
    Check(
        "unpool",
        "batch_with_padding",
        lambda g: pooled_inputs(g, batch=2, channels=3, size=10, kernel=3, stride=2, padding=1, shared_switches=True),
        hidden=True,
    ),
    Check(
        "deconv_step",
        "3x3_convolution_and_2x2_pool",
        lambda g: layer_inputs(
            g, batch=1, in_channels=2, out_channels=3, size=8, kernel=3, stride=1, padding=1, pool=(2, 2, 0)
        ),
    ),
    Check(
        "deconv_step",
        "zf_layer_1_7x7_stride_2",
        lambda g: layer_inputs(
            g, batch=1, in_channels=3, out_channels=4, size=16, kernel=7, stride=2, padding=3, pool=(3, 2, 1)
        ),
        points=2,
    ),
    Check(
        "deconv_step",
        "batch_5x5_stride_2_odd_size",
        lambda g: layer_inputs(
            g, batch=2, in_channels=3, out_channels=5, size=13, kernel=5, stride=2, padding=1, pool=(3, 2, 0)
        ),
        hidden=True,
    ),
]
