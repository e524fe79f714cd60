"""Homework 4: receptive fields.

Next to each deconvnet projection, Zeiler and Fergus show the image patch that the projected
unit can see: its *receptive field*. It follows from the kernel sizes, strides and paddings of
the convolutions and poolings below the unit (ReLUs and normalizations change nothing).

Describe every window layer by `(kernel, stride, padding)`, listed from the input upwards. A
unit `(y, x)` of the top layer then sees the input rows `y * stride + offset` to
`y * stride + offset + size - 1` (and the same for columns), where, going up one layer at a
time and starting from `size = 1, stride = 1, offset = 0`:

* `size` grows by `(kernel - 1) * stride` (the stride of the layers *below* this one),
* `offset` decreases by `padding * stride` (same stride: padding is counted in this layer's
  input units),
* `stride` is multiplied by the layer's stride.

You implement `receptive_field` and `unit_box`, the pixel box of one unit clipped to the image.
The course's own versions are `course_utils.activations.receptive_field` and
`receptive_field_box`, which read the layers from a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from course_utils.homework import Check


def receptive_field(layers: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """``(size, stride, offset)`` in input pixels of a unit on top of ``layers``.

    Args:
        layers: ``(kernel, stride, padding)`` of each convolution or max-pool, input first.

    Returns:
        ``size``: pixels seen along each axis; ``stride``: pixels between neighbouring units;
        ``offset``: first input row (or column) seen by unit 0, negative when it reaches into the
        padding.
    """
    # BEGIN SOLUTION
    # HINT: Walk the layers from the input up, keeping three numbers: the size and offset of one
    # HINT: unit's window in pixels, and the stride of one step of the current layer measured in
    # HINT: pixels. How does each layer's kernel, stride and padding change them?
    size, stride, offset = 1, 1, 0
    for kernel, layer_stride, padding in layers:
        size += (kernel - 1) * stride
        offset -= padding * stride
        stride *= layer_stride
    return size, stride, offset
    # END SOLUTION


def unit_box(
    layers: Sequence[tuple[int, int, int]], y: int, x: int, image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the pixels unit ``(y, x)`` sees, clipped to the image.

    ``bottom`` and ``right`` are exclusive (``image[:, top:bottom, left:right]`` is the patch);
    ``image_size`` is ``(H, W)``.
    """
    # BEGIN SOLUTION
    # HINT: Map the unit to its window in pixels with the function above, then keep the part that
    # HINT: lies inside the image.
    size, stride, offset = receptive_field(layers)
    height, width = image_size
    top, left = y * stride + offset, x * stride + offset
    return max(top, 0), max(left, 0), min(top + size, height), min(left + size, width)
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# The grader's checks. Each one calls your function on inputs made here (seeded; the grader
# reads the stored copies from the reference data) and compares with the reference solution.
# ---------------------------------------------------------------------------------------------

#: ``(kernel, stride, padding)`` of the course's ZFNet (64x64 inputs) from conv1 to pool5.
ZFNET_LAYERS = ((7, 2, 3), (3, 2, 1), (5, 1, 2), (3, 2, 1), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 1))
#: The same for torchvision's AlexNet (224x224 inputs) from conv1 to pool2.
ALEXNET_LAYERS = ((11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0))

CHECKS = [
    Check("receptive_field", "one_convolution", lambda g: {"layers": ((7, 2, 3),)}),
    Check("receptive_field", "zfnet_conv1_to_pool1", lambda g: {"layers": ZFNET_LAYERS[:2]}),
    Check("receptive_field", "alexnet_conv1_to_pool2", lambda g: {"layers": ALEXNET_LAYERS}),
    Check("receptive_field", "zfnet_conv1_to_pool5", lambda g: {"layers": ZFNET_LAYERS}, hidden=True),
    Check(
        "unit_box", "zfnet_conv2_inside", lambda g: {"layers": ZFNET_LAYERS[:3], "y": 5, "x": 7, "image_size": (64, 64)}
    ),
    Check(
        "unit_box",
        "zfnet_pool2_clipped_at_the_corner",
        lambda g: {"layers": ZFNET_LAYERS[:4], "y": 0, "x": 7, "image_size": (64, 64)},
        points=2,
    ),
    Check(
        "unit_box",
        "alexnet_pool2_non_square_image",
        lambda g: {"layers": ALEXNET_LAYERS, "y": 12, "x": 3, "image_size": (224, 160)},
        hidden=True,
    ),
]
