"""Correspondence analysis (Zeiler & Fergus, section 4.2, Table 1).

Does the network implicitly relate the same object part across images? Mask the same part
(left eye, right eye, nose) in several face images and compare how the feature vectors change:

* ``eps_i = x_i - x~_i``: the difference between the layer-``l`` features of image ``i`` and of
  the same image with the part masked (flattened activations).
* ``Delta_l = mean over pairs i < j of Hamming(sign(eps_i), sign(eps_j)) / D``, with ``D`` the
  feature length. A low ``Delta`` means masking that part changes the features in the same
  direction in every image, i.e. the network encodes the part consistently.

Normalization. The paper writes ``Delta_l = sum_{i != j} H(sign(eps_i), sign(eps_j))`` over 5
dog images and reports values of about 0.07-0.11 (layer 5: left eye 0.067 +- 0.007, right eye
0.069 +- 0.015, nose 0.079 +- 0.017, random 0.107 +- 0.017; layer 7: 0.07-0.08). Raw counts
over thousands of dimensions cannot be that small, so the Hamming distance must be a fraction
of the feature length; we average it over the pairs. The mean over ordered pairs ``i != j``
equals the mean over ``i < j`` (the distance is symmetric), so the choice between the two does
not matter. ``sign`` takes the values -1, 0, +1: most activations after a ReLU or max-pool are
zero in both images, so ``eps`` is sparse and its zeros agree, which is why values are well
below the 0.5 of independent random signs.

Controls: squares of the same size at random positions (:func:`random_centres`), by default
inside the face, so that the control differs from the parts only in *which* region is hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .data.core import ImageTensorDataset
from .layers import layer_outputs

__all__ = [
    "PART_NAMES",
    "mask_square",
    "hamming_consistency",
    "correspondence_delta",
    "random_centres",
    "part_sizes",
    "correspondence_table",
    "format_correspondence_table",
]

#: Order of the parts in the embedded dataset's ``extras["parts"]`` ``(N, 3, 2)``.
PART_NAMES = ("left_eye", "right_eye", "nose")


def _square_start(centre: float, size: int) -> int:
    """First pixel of a ``size``-pixel run centred on ``centre`` (the nearest pixel for odd sizes)."""
    return math.floor(centre - (size - 1) / 2 + 0.5)


def mask_square(image: torch.Tensor, centre: Sequence[float], size: int, fill: float = 0.0) -> torch.Tensor:
    """A copy of ``image (C, H, W)`` with a ``size x size`` square around ``centre = (x, y)`` set to ``fill``.

    ``x`` is the column and ``y`` the row, in pixels (pixel centres at integers). The square
    covers columns ``x0 .. x0 + size - 1`` with ``x0 = floor(x - (size - 1) / 2 + 0.5)`` (same
    for rows) and is clipped at the image border. ``fill`` is in the image's units: 0 in a
    normalized image is the dataset's mean colour, the grey of the paper's masks.
    """
    if image.ndim != 3:
        raise ValueError(
            f"image must have shape (C, H, W), got {tuple(image.shape)}; "
            "mask a batch one image at a time or index it with images[i]"
        )
    if size < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size}")
    x, y = (float(value) for value in centre)
    height, width = image.shape[-2:]
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise ValueError(
            f"centre (x={x}, y={y}) lies outside the {width}x{height} image "
            f"(need 0 <= x <= {width - 1}, 0 <= y <= {height - 1}); is it (x, y) and not NaN?"
        )
    left, top = _square_start(x, size), _square_start(y, size)
    masked = image.clone()
    masked[:, max(top, 0) : top + size, max(left, 0) : left + size] = fill
    return masked


def hamming_consistency(eps: torch.Tensor) -> float:
    """Mean normalized Hamming distance between the signs of every pair of rows of ``eps (N, D)``.

    ``Delta = (1 / (P * D)) * sum_{i < j} #{d : sign(eps[i, d]) != sign(eps[j, d])}`` with
    ``P = N (N - 1) / 2`` pairs and ``sign`` in {-1, 0, +1}. 0 means all rows change in the
    same direction everywhere; it is unchanged when ``eps`` is scaled by a positive factor.
    """
    if eps.ndim != 2 or eps.shape[0] < 2 or eps.shape[1] < 1:
        raise ValueError(
            f"eps must have shape (N, D) with N >= 2 images and D >= 1 features, "
            f"got {tuple(eps.shape)}; flatten each difference with .flatten(1)"
        )
    signs = torch.sign(eps)
    first, second = torch.triu_indices(len(signs), len(signs), offset=1)
    return (signs[first] != signs[second]).float().mean().item()


def _per_image_sizes(size: int | Sequence[int] | torch.Tensor, count: int) -> list[int]:
    values = torch.as_tensor(size)
    sizes = [int(s) for s in (values.expand(count) if values.ndim == 0 else values.flatten())]
    if len(sizes) != count:
        raise ValueError(f"size must be one int or one per image ({count}), got {len(sizes)} values")
    return sizes


def correspondence_delta(
    model: nn.Module,
    images: torch.Tensor,
    centres: torch.Tensor,
    size: int | Sequence[int] | torch.Tensor,
    layers: Sequence[str] = ("pool5", "relu7"),
    fill: float = 0.0,
) -> dict[str, float]:
    """``{layer: Delta}`` for masking a square around ``centres[i]`` in each of ``images``.

    Args:
        model: a network with the paper's layer names (eval mode is used).
        images: ``(N, 3, H, W)`` normalized images, ``N >= 2``.
        centres: ``(N, 2)`` square centres ``(x, y)`` in pixels, one per image.
        size: the square's side in pixels, one int or ``N`` of them.
        layers: where the features are compared; ``pool5`` is the paper's "layer 5" (its
            output after pooling), ``relu7`` its "layer 7".
        fill: value written into the square (0: the mean colour of a normalized image).
    """
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"images must have shape (N, 3, H, W) with N >= 2, got {tuple(images.shape)}")
    centres = torch.as_tensor(centres, dtype=torch.float64)
    if centres.shape != (images.shape[0], 2):
        raise ValueError(
            f"centres must have shape ({images.shape[0]}, 2): one (x, y) per image, got {tuple(centres.shape)}"
        )
    sizes = _per_image_sizes(size, len(images))
    masked = torch.stack(
        [mask_square(image, centre.tolist(), side, fill) for image, centre, side in zip(images, centres, sizes)]
    )
    features = layer_outputs(model, torch.cat([images, masked]), layers)  # one forward pass for both
    count = len(images)
    return {
        layer: hamming_consistency((features[layer][:count] - features[layer][count:]).flatten(1)) for layer in layers
    }


def random_centres(
    region: torch.Tensor,
    size: int | Sequence[int] | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random square centres ``(N, 2)`` as ``(x, y)``: one per image, inside ``region``, square fully in the image.

    ``region`` is ``(N, H, W)`` bool: where a centre may fall (an object mask, or
    ``torch.ones(N, H, W, dtype=torch.bool)`` for anywhere). Centres are drawn uniformly among
    the allowed pixels whose ``size x size`` square (see :func:`mask_square`) lies entirely
    inside the image.
    """
    if region.ndim != 3 or region.dtype != torch.bool:
        raise ValueError(f"region must be a bool tensor of shape (N, H, W), got {region.dtype} {tuple(region.shape)}")
    count, height, width = region.shape
    sizes = _per_image_sizes(size, count)
    centres = torch.empty(count, 2)
    for index, (allowed, side) in enumerate(zip(region, sizes)):
        low = -_square_start(0.0, side)  # the first centre whose square starts at pixel 0
        inside = torch.zeros_like(allowed)
        inside[low : height - side + 1 + low, low : width - side + 1 + low] = True
        rows, columns = (allowed & inside).nonzero(as_tuple=True)
        if len(rows) == 0:
            raise ValueError(
                f"image {index}: no pixel of the region can centre a {side}x{side} square "
                "inside the image; use a smaller size or a larger region"
            )
        pick = int(torch.randint(len(rows), (1,), generator=generator))
        centres[index] = torch.tensor([float(columns[pick]), float(rows[pick])])
    return centres


def part_sizes(part_radius: torch.Tensor) -> torch.Tensor:
    """Square sides ``(N,)`` covering a part of radius ``part_radius (N,)``: ``2 * ceil(r) + 1`` pixels."""
    return 2 * torch.ceil(part_radius).long() + 1


def _face_indices(dataset: ImageTensorDataset) -> torch.Tensor:
    missing = [name for name in ("parts", "part_radius", "masks") if name not in dataset.extras]
    if missing:
        raise ValueError(
            f"the dataset has no {missing} annotations; use the embedded dataset "
            "(course_utils.data.load_embedded), whose face images record their parts"
        )
    parts = dataset.extras["parts"]
    if parts.ndim != 3 or parts.shape[1:] != (len(PART_NAMES), 2):
        raise ValueError(f"extras['parts'] must have shape (N, {len(PART_NAMES)}, 2), got {tuple(parts.shape)}")
    height, width = dataset.images.shape[-2:]
    inside = (
        (parts[..., 0] >= 0) & (parts[..., 0] <= width - 1) & (parts[..., 1] >= 0) & (parts[..., 1] <= height - 1)
    ).all(dim=1)  # False for NaN
    return inside.nonzero().flatten()


def correspondence_table(
    model: nn.Module,
    dataset: ImageTensorDataset,
    parts: Sequence[str] = PART_NAMES,
    draws: int = 10,
    seed: int = 0,
    num_images: int = 5,
    layers: Sequence[str] = ("pool5", "relu7"),
    size: int | None = None,
    fill: float = 0.0,
    random_within: str = "object",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Table 1: ``Delta`` per masked part and layer, mean +- std over ``draws`` random draws.

    Each draw picks ``num_images`` face images at random (those whose ``extras["parts"]`` are
    not NaN and lie inside the image) and masks, in all of them, each part of ``parts`` and then a random square
    (fresh positions each draw; centre inside the face mask when ``random_within="object"``,
    anywhere with ``"image"``). Squares are ``size`` pixels, or with ``size=None`` sized per
    image from ``extras["part_radius"]`` (:func:`part_sizes`); the random square of an image
    has the same size as its parts'.

    Returns one row per occlusion (``*parts``, then ``"random"``) and layer:
    ``{"occlusion", "layer", "mean", "std", "values"}``; ``std`` is the sample standard
    deviation over draws (``None`` for a single draw).
    """
    unknown = [part for part in parts if part not in PART_NAMES]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {PART_NAMES}")
    if random_within not in ("object", "image"):
        raise ValueError(f"random_within must be 'object' or 'image', got {random_within!r}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    faces = _face_indices(dataset)
    if len(faces) < max(num_images, 2):
        raise ValueError(
            f"the dataset has {len(faces)} face images; num_images={num_images} needs at least "
            f"max(num_images, 2) of them"
        )
    generator = torch.Generator().manual_seed(seed)
    occlusions = [*parts, "random"]
    values: dict[tuple[str, str], list[float]] = {(o, layer): [] for o in occlusions for layer in layers}
    for _ in tqdm(range(draws), desc="correspondence draws", leave=False, disable=not progress):
        chosen = faces[torch.randperm(len(faces), generator=generator)[:num_images]]
        images = dataset.normalize(dataset.images[chosen])
        sizes = part_sizes(dataset.extras["part_radius"][chosen]) if size is None else torch.full((len(chosen),), size)
        region = dataset.extras["masks"][chosen].bool()
        if random_within == "image":
            region = torch.ones_like(region)
        centres = {part: dataset.extras["parts"][chosen, PART_NAMES.index(part)] for part in parts}
        centres["random"] = random_centres(region, sizes, generator)
        for occlusion in occlusions:
            deltas = correspondence_delta(model, images, centres[occlusion], sizes, layers, fill)
            for layer, delta in deltas.items():
                values[(occlusion, layer)].append(delta)
    rows = []
    for (occlusion, layer), samples in values.items():
        tensor = torch.tensor(samples, dtype=torch.float64)
        rows.append(
            {
                "occlusion": occlusion,
                "layer": layer,
                "mean": tensor.mean().item(),
                "std": tensor.std().item() if len(samples) > 1 else None,
                "values": samples,
            }
        )
    return rows


def format_correspondence_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`correspondence_table` as a text table: occlusions down, layers across."""
    layers = list(dict.fromkeys(row["layer"] for row in rows))
    occlusions = list(dict.fromkeys(row["occlusion"] for row in rows))
    cells = {(row["occlusion"], row["layer"]): row for row in rows}
    width = max(len(o) for o in occlusions + ["occlusion"])

    def cell(row: dict[str, Any]) -> str:
        spread = "" if row["std"] is None else f" +- {row['std']:.3f}"
        return f"{row['mean']:.3f}{spread}"

    lines = ["occlusion".ljust(width) + "".join(f"  {('Delta ' + layer):>15}" for layer in layers)]
    for occlusion in occlusions:
        lines.append(occlusion.ljust(width) + "".join(f"  {cell(cells[(occlusion, layer)]):>15}" for layer in layers))
    return "\n".join(lines)
