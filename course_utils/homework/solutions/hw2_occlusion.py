"""Homework 2: occlusion sensitivity.

Does the network look at the object, or at its surroundings? Zeiler and Fergus (Fig. 7) slide
a grey square over the image and, for every position of the square, record the probability
of the correct class. Where the square hides what the network relies on, the probability
drops: the map of probabilities over the square's positions localizes the evidence.

The square (the *occluder*) is `window` pixels wide and moves by `stride` pixels. Its
top-left corner takes the positions `0, stride, 2 * stride, ...` as long as the square stays
inside the image, i.e. up to `size - window`, in rows and in columns. The square is filled
with one value, `fill`: 0 in a normalized image is the dataset's mean colour, the paper's grey.

You implement the positions (`occluder_positions`), the occluded copy of an image
(`occlude`) and the map itself (`occlusion_map`), by brute force: one forward pass per
position (batch them). The course's own `course_utils.occlusion.occlusion_map` computes the
same map much faster by recomputing only what the square changes. The checks use float64
tensors and small random networks: keep the dtype of the inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.homework import Check, random_zfnet


def occluder_positions(size: int, window: int, stride: int) -> Tensor:
    """Top-left coordinates of the occluder along one axis of ``size`` pixels.

    Returns:
        ``(n,)`` int64: ``0, stride, 2 * stride, ...``, every value at most ``size - window``.
    """
    # BEGIN SOLUTION
    # HINT: Which top-left corners keep the whole square inside the image? List them from 0 in
    # HINT: steps of stride; is size - window itself one of them?
    return torch.arange(0, size - window + 1, stride, dtype=torch.long)
    # END SOLUTION


def occlude(image: Tensor, top: int, left: int, window: int, fill: float) -> Tensor:
    """A copy of ``image`` ``(3, H, W)`` with rows ``top .. top + window - 1`` and columns
    ``left .. left + window - 1`` set to ``fill`` in every channel. ``image`` is unchanged."""
    # BEGIN SOLUTION
    # HINT: The caller's image must stay as it was: work on a copy, then set the square's rows and
    # HINT: columns in every channel.
    occluded = image.clone()
    occluded[:, top : top + window, left : left + window] = fill
    return occluded
    # END SOLUTION


def occlusion_map(model: nn.Module, image: Tensor, window: int, stride: int, target: int, fill: float = 0.0) -> Tensor:
    """``P(target)`` for every occluder position (Fig. 7d of the paper).

    Args:
        model: a classifier in eval mode: ``(B, 3, H, W)`` images -> ``(B, K)`` logits.
        image: ``(3, H, W)`` normalized image.
        window, stride: the occluder's side and step in pixels.
        target: the class whose probability is mapped.
        fill: the occluder's value.

    Returns:
        ``(R, C)``: entry ``[i, j]`` is the softmax probability of ``target`` when the
        occluder's top-left corner is at row ``rows[i]`` and column ``cols[j]``, with ``rows``
        and ``cols`` from :func:`occluder_positions` for the image's height and width.
    """
    # BEGIN SOLUTION
    # HINT: One occluded image per (row, column) position; evaluating them as a batch is much
    # HINT: faster than one at a time, and no gradients are needed. The model returns logits: what
    # HINT: turns them into probabilities, and along which dimension? Keep the target class and
    # HINT: arrange the values with rows first.
    rows = occluder_positions(image.shape[1], window, stride)
    cols = occluder_positions(image.shape[2], window, stride)
    batch = torch.stack([occlude(image, int(top), int(left), window, fill) for top in rows for left in cols])
    with torch.no_grad():
        probabilities = model(batch).softmax(dim=1)
    return probabilities[:, target].view(len(rows), len(cols))
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# The grader's checks. Each one calls your function on inputs made here (seeded; the grader
# reads the stored copies from the reference data) and compares with the reference solution.
# ---------------------------------------------------------------------------------------------


def occlude_inputs(generator: torch.Generator, size: int, top: int, left: int, window: int, fill: float) -> dict:
    """A random ``(3, size, size)`` image and an occluder."""
    image = torch.randn(3, size, size, generator=generator, dtype=torch.float64)
    return {"image": image, "top": top, "left": left, "window": window, "fill": fill}


def map_inputs(generator: torch.Generator, window: int, stride: int, target: int, fill: float) -> dict:
    """A random 4-class network and a random 16x16 image."""
    model = random_zfnet(generator, image_size=16, num_classes=4)
    image = torch.randn(3, 16, 16, generator=generator, dtype=torch.float64)
    return {"model": model, "image": image, "window": window, "stride": stride, "target": target, "fill": fill}


CHECKS = [
    Check("occluder_positions", "stride_1", lambda g: {"size": 8, "window": 3, "stride": 1}),
    Check("occluder_positions", "last_step_does_not_fit", lambda g: {"size": 10, "window": 4, "stride": 4}),
    Check(
        "occluder_positions",
        "window_as_large_as_the_image",
        lambda g: {"size": 5, "window": 5, "stride": 2},
        hidden=True,
    ),
    Check("occlude", "inside_the_image", lambda g: occlude_inputs(g, size=8, top=2, left=3, window=3, fill=0.0)),
    Check("occlude", "touching_the_corner", lambda g: occlude_inputs(g, size=8, top=4, left=4, window=4, fill=-1.5)),
    Check(
        "occlude", "whole_image", lambda g: occlude_inputs(g, size=6, top=0, left=0, window=6, fill=0.25), hidden=True
    ),
    Check(
        "occlusion_map", "window_4_stride_2", lambda g: map_inputs(g, window=4, stride=2, target=1, fill=0.0), points=2
    ),
    Check(
        "occlusion_map",
        "window_6_stride_5_dark_fill",
        lambda g: map_inputs(g, window=6, stride=5, target=0, fill=-1.0),
        points=2,
    ),
    Check(
        "occlusion_map",
        "window_3_stride_3",
        lambda g: map_inputs(g, window=3, stride=3, target=3, fill=0.5),
        hidden=True,
    ),
]
