"""Homework 3: correspondence, the Delta of Table 1.

Does the network relate the same object part across different images, without being told
about parts? Zeiler and Fergus (section 4.2) mask the same part, say the left eye, in several
face images and look at how the features of a layer change:

* `eps_i = x_i - x~_i`: the features of image `i` minus those of the same image with the part
  masked (flattened to one vector of length D).
* `Delta = mean over pairs i < j of H(sign(eps_i), sign(eps_j)) / D`, where `H` counts the
  positions at which two sign vectors differ and `sign` takes the values -1, 0 and +1.

A low Delta says: hiding this part changes the features in the same direction in every image,
i.e. the layer encodes the part consistently. The paper finds lower values for eyes and nose
than for random regions at layer 5.

You implement the mask (`mask_square`), the Hamming fraction of two sign vectors
(`sign_disagreement`), its mean over all pairs (`hamming_consistency`) and the whole
measurement (`correspondence_delta`). The checks use float64 tensors and small random
networks: keep the dtype of the inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_utils.homework import Check, random_zfnet
from course_utils.layers import layer_outputs


def mask_square(image: Tensor, centre: tuple[float, float], window: int, fill: float = 0.0) -> Tensor:
    """A copy of ``image`` ``(C, H, W)`` with a ``window x window`` square around ``centre`` set to ``fill``.

    ``centre = (y, x)``: ``y`` is the row, ``x`` the column (pixel centres at integers). The
    square covers rows ``y0 .. y0 + window - 1`` with ``y0 = floor(y - (window - 1) / 2 + 0.5)``,
    and columns likewise from ``x0``; the part outside the image is dropped. ``image`` is unchanged.
    """
    # BEGIN SOLUTION
    # HINT: Turn the centre into the square's first row and column (the docstring says how to
    # HINT: round). Near the border part of the square falls outside the image: what does a
    # HINT: negative index do in a Python slice, and how do you keep only the part inside? Work on
    # HINT: a copy.
    y, x = centre
    top = math.floor(y - (window - 1) / 2 + 0.5)
    left = math.floor(x - (window - 1) / 2 + 0.5)
    masked = image.clone()
    masked[:, max(top, 0) : top + window, max(left, 0) : left + window] = fill
    return masked
    # END SOLUTION


def sign_disagreement(a: Tensor, b: Tensor) -> float:
    """Fraction of the positions ``d`` of two ``(D,)`` vectors where ``sign(a[d]) != sign(b[d])``,
    with ``sign`` in {-1, 0, +1}: the Hamming distance of the sign vectors divided by ``D``."""
    # BEGIN SOLUTION
    # HINT: Compare the signs position by position and count the disagreements as a fraction of D:
    # HINT: the result is a float between 0 and 1.
    return (torch.sign(a) != torch.sign(b)).double().mean().item()
    # END SOLUTION


def hamming_consistency(eps: Tensor) -> float:
    """Mean of :func:`sign_disagreement` over all pairs of rows ``i < j`` of ``eps`` ``(N, D)``."""
    # BEGIN SOLUTION
    # HINT: Every unordered pair of different rows counts once; how many pairs are there for N
    # HINT: rows?
    pairs = [(i, j) for i in range(len(eps)) for j in range(i + 1, len(eps))]
    return sum(sign_disagreement(eps[i], eps[j]) for i, j in pairs) / len(pairs)
    # END SOLUTION


def correspondence_delta(
    model: nn.Module, images: Tensor, centres: Tensor, window: int, layer: str, fill: float = 0.0
) -> float:
    """Delta of one masked part: ``hamming_consistency`` of ``eps_i = x_i - x~_i`` at ``layer``.

    Args:
        model: a network whose layers are named like the paper's (``"pool5"``, ``"relu7"``...).
        images: ``(N, 3, H, W)`` normalized images, ``N >= 2``.
        centres: ``(N, 2)``: the ``(y, x)`` centre of the square to mask in each image.
        window: the square's side (see :func:`mask_square`).
        layer: the layer whose output (flattened per image) is ``x``.
        fill: the value of the masked pixels.
    """
    # BEGIN SOLUTION
    # HINT: Mask each image, take the features at `layer` (the module imports a helper that
    # HINT: returns them), form eps_i as the module docstring defines it and reuse your functions
    # HINT: above. Floating-point sums depend on the batch
    # HINT: they are computed in: if the features of an original and of its masked copy come from
    # HINT: two separate forward passes, positions the mask cannot reach may differ in the last bit
    # HINT: and get random signs. How can one pass give you both?
    masked = torch.stack(
        [mask_square(image, tuple(centre.tolist()), window, fill) for image, centre in zip(images, centres)]
    )
    features = layer_outputs(model, torch.cat([images, masked]), [layer])[layer].flatten(1)
    count = len(images)
    return hamming_consistency(features[:count] - features[count:])
    # END SOLUTION


# ---------------------------------------------------------------------------------------------
# The grader's checks. Each one calls your function on inputs made here (seeded; the grader
# reads the stored copies from the reference data) and compares with the reference solution.
# ---------------------------------------------------------------------------------------------


def sparse_rows(generator: torch.Generator, rows: int, length: int) -> Tensor:
    """``(rows, length)`` random values, about half of them exactly 0 (like differences of ReLU maps)."""
    values = torch.randn(rows, length, generator=generator, dtype=torch.float64)
    return values * (torch.rand(rows, length, generator=generator, dtype=torch.float64) < 0.5)


def mask_inputs(generator: torch.Generator, height: int, width: int, centre: tuple[float, float], window: int) -> dict:
    image = torch.randn(3, height, width, generator=generator, dtype=torch.float64)
    return {"image": image, "centre": centre, "window": window, "fill": 0.0}


def delta_inputs(generator: torch.Generator, count: int, window: int, layer: str) -> dict:
    """A random network for 24x24 images, ``count`` random images and centres inside them."""
    model = random_zfnet(generator, image_size=24, num_classes=5)
    images = torch.randn(count, 3, 24, 24, generator=generator, dtype=torch.float64)
    centres = torch.randint(4, 20, (count, 2), generator=generator).double()
    return {"model": model, "images": images, "centres": centres, "window": window, "layer": layer}


CHECKS = [
    Check("mask_square", "odd_size_inside", lambda g: mask_inputs(g, 8, 8, centre=(4.0, 3.0), window=3)),
    Check("mask_square", "even_size_between_pixels", lambda g: mask_inputs(g, 8, 8, centre=(2.0, 3.5), window=4)),
    Check("mask_square", "clipped_at_the_border", lambda g: mask_inputs(g, 8, 8, centre=(1.0, 0.0), window=5)),
    Check(
        "mask_square",
        "wide_image_bottom_right",
        lambda g: mask_inputs(g, 6, 9, centre=(5.0, 8.0), window=4),
        hidden=True,
    ),
    Check(
        "sign_disagreement",
        "by_hand",
        lambda g: {
            "a": torch.tensor([1.0, -2.0, 0.0, 3.0, 0.0, -1.0], dtype=torch.float64),
            "b": torch.tensor([2.0, 0.0, 0.0, -1.0, 5.0, -3.0], dtype=torch.float64),
        },
    ),
    Check("sign_disagreement", "sparse_random", lambda g: dict(zip("ab", sparse_rows(g, 2, 50)))),
    Check("sign_disagreement", "long_sparse_random", lambda g: dict(zip("ab", sparse_rows(g, 2, 999))), hidden=True),
    Check("hamming_consistency", "two_rows", lambda g: {"eps": sparse_rows(g, 2, 12)}),
    Check("hamming_consistency", "five_rows", lambda g: {"eps": sparse_rows(g, 5, 40)}, points=2),
    Check("hamming_consistency", "seven_rows", lambda g: {"eps": sparse_rows(g, 7, 100)}, hidden=True),
    Check("correspondence_delta", "pool5", lambda g: delta_inputs(g, count=5, window=7, layer="pool5"), points=2),
    Check("correspondence_delta", "relu7", lambda g: delta_inputs(g, count=5, window=5, layer="relu7")),
    Check(
        "correspondence_delta",
        "conv4_four_images",
        lambda g: delta_inputs(g, count=4, window=9, layer="conv4"),
        hidden=True,
    ),
]
