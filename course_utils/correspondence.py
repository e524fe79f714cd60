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
from dataclasses import dataclass

import torch
from torch import nn

from .checks import check_eval_mode, check_fill, check_float_images, check_images, check_positive_int
from .data.core import ImageTensorDataset
from .layers import layer_outputs
from .progress import progress_bar
from .stats import MeanStd

__all__ = [
    "PART_NAMES",
    "mask_square",
    "hamming_consistency",
    "correspondence_delta",
    "random_centres",
    "part_windows",
    "correspondence_table",
    "CorrespondenceTable",
]

#: Order of the parts in the embedded dataset's ``extras["parts"]`` ``(N, 3, 2)``.
PART_NAMES = ("left_eye", "right_eye", "nose")


def _square_start(centre: float, window: int) -> int:
    """First pixel of a ``window``-pixel run centred on ``centre`` (the nearest pixel for odd windows)."""
    return math.floor(centre - (window - 1) / 2 + 0.5)


def mask_square(image: torch.Tensor, centre: Sequence[float], window: int, fill: float = 0.0) -> torch.Tensor:
    """A copy of ``image (C, H, W)`` with a ``window x window`` square around ``centre = (y, x)``
    set to ``fill``.

    ``y`` is the row and ``x`` the column, in pixels (pixel centres at integers). The square
    covers rows ``y0 .. y0 + window - 1`` with ``y0 = floor(y - (window - 1) / 2 + 0.5)`` (same
    for columns) and is clipped at the image border. ``fill`` is in the image's units: 0 in a
    normalized image is the dataset's mean colour, the grey of the paper's masks.
    """
    check_float_images(image, batched=False, channels=None)
    window = check_positive_int(window, "window", "the square's side in pixels")
    fill_value = float(check_fill(fill, "fill", channels=1))
    y, x = (float(value) for value in centre)
    height, width = image.shape[-2:]
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise ValueError(
            f"centre (y={y}, x={x}) lies outside the {height}x{width} image "
            f"(need 0 <= y <= {height - 1}, 0 <= x <= {width - 1}); is it (y, x) and not NaN?"
        )
    top, left = _square_start(y, window), _square_start(x, window)
    masked = image.clone()
    masked[:, max(top, 0) : top + window, max(left, 0) : left + window] = fill_value
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


def _per_image_windows(window: int | Sequence[int] | torch.Tensor, count: int) -> list[int]:
    values = torch.as_tensor(window)
    if values.is_floating_point() or values.dtype == torch.bool:
        raise ValueError(f"window must be integers (square sides in pixels), got {values.dtype} values")
    windows = [int(w) for w in (values.expand(count) if values.ndim == 0 else values.flatten())]
    if len(windows) != count:
        raise ValueError(f"window must be one int or one per image ({count}), got {len(windows)} values")
    return [check_positive_int(w, "window", "the square's side in pixels") for w in windows]


def correspondence_delta(
    model: nn.Module,
    images: torch.Tensor,
    centres: torch.Tensor,
    window: int | Sequence[int] | torch.Tensor,
    *,
    layers: Sequence[str] = ("pool5", "relu7"),
    fill: float = 0.0,
) -> dict[str, float]:
    """``{layer: Delta}`` for masking a square around ``centres[i]`` in each of ``images``.

    Args:
        model: a flat model in eval mode with the paper's layer names.
        images: ``(N, 3, H, W)`` normalized images, ``N >= 2``.
        centres: ``(N, 2)`` square centres ``(y, x)`` in pixels, one per image.
        window: the square's side in pixels, one int or ``N`` of them.
        layers: where the features are compared; ``pool5`` is the paper's "layer 5" (its
            output after pooling), ``relu7`` its "layer 7".
        fill: value written into the square (0: the mean colour of a normalized image).
    """
    check_float_images(images)
    check_eval_mode(model)
    check_images(model, images)
    if images.shape[0] < 2:
        raise ValueError(f"images must hold N >= 2 images to compare, got {images.shape[0]}")
    centres = torch.as_tensor(centres, dtype=torch.float64)
    if centres.shape != (images.shape[0], 2):
        raise ValueError(
            f"centres must have shape ({images.shape[0]}, 2): one (y, x) per image, got {tuple(centres.shape)}"
        )
    windows = _per_image_windows(window, len(images))
    masked = torch.stack(
        [mask_square(image, centre.tolist(), side, fill) for image, centre, side in zip(images, centres, windows)]
    )
    features = layer_outputs(model, torch.cat([images, masked]), layers)  # one forward pass for both
    count = len(images)
    return {
        layer: hamming_consistency((features[layer][:count] - features[layer][count:]).flatten(1)) for layer in layers
    }


def random_centres(
    region: torch.Tensor,
    window: int | Sequence[int] | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random square centres ``(N, 2)`` as ``(y, x)``: one per image, inside ``region``, square fully in the image.

    ``region`` is ``(N, H, W)`` bool: where a centre may fall (an object mask, or
    ``torch.ones(N, H, W, dtype=torch.bool)`` for anywhere). Centres are drawn uniformly among
    the allowed pixels whose ``window x window`` square (see :func:`mask_square`) lies entirely
    inside the image.
    """
    if region.ndim != 3 or region.dtype != torch.bool:
        raise ValueError(f"region must be a bool tensor of shape (N, H, W), got {region.dtype} {tuple(region.shape)}")
    count, height, width = region.shape
    windows = _per_image_windows(window, count)
    centres = torch.empty(count, 2)
    for index, (allowed, side) in enumerate(zip(region, windows)):
        low = -_square_start(0.0, side)  # the first centre whose square starts at pixel 0
        inside = torch.zeros_like(allowed)
        inside[low : height - side + 1 + low, low : width - side + 1 + low] = True
        rows, columns = (allowed & inside).nonzero(as_tuple=True)
        if len(rows) == 0:
            raise ValueError(
                f"image {index}: no pixel of the region can centre a {side}x{side} square "
                "inside the image; use a smaller window or a larger region"
            )
        pick = int(torch.randint(len(rows), (1,), generator=generator))
        centres[index] = torch.tensor([float(rows[pick]), float(columns[pick])])
    return centres


@dataclass(frozen=True)
class CorrespondenceTable:
    """Table 1: ``Delta`` per occlusion and layer over random draws of face images.

    Attributes:
        occlusions: the masked parts, then ``"random"``.
        layers: the layers compared (``pool5`` is the paper's layer 5, ``relu7`` its layer 7).
        deltas: ``{(occlusion, layer): Delta of each draw}``.
    """

    occlusions: tuple[str, ...]
    layers: tuple[str, ...]
    deltas: dict[tuple[str, str], MeanStd]

    def __getitem__(self, key: tuple[str, str]) -> MeanStd:
        """``table[occlusion, layer]``: the ``Delta`` of every draw."""
        if key not in self.deltas:
            raise KeyError(f"no entry {key}; occlusions {self.occlusions}, layers {self.layers}")
        return self.deltas[key]

    def format(self) -> str:
        """A text table: occlusions down, layers across, ``mean +- std`` over draws."""
        width = max(len(o) for o in (*self.occlusions, "occlusion"))
        lines = ["occlusion".ljust(width) + "".join(f"  {('Delta ' + layer):>15}" for layer in self.layers)]
        for occlusion in self.occlusions:
            cells = "".join(f"  {self.deltas[(occlusion, layer)].format():>15}" for layer in self.layers)
            lines.append(occlusion.ljust(width) + cells)
        return "\n".join(lines)


def part_windows(part_radius: torch.Tensor) -> torch.Tensor:
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
        (parts[..., 0] >= 0) & (parts[..., 0] <= height - 1) & (parts[..., 1] >= 0) & (parts[..., 1] <= width - 1)
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
    window: int | None = None,
    fill: float = 0.0,
    random_within: str = "object",
    progress: bool = True,
) -> CorrespondenceTable:
    """Table 1: ``Delta`` per masked part and layer, mean +- std over ``draws`` random draws.

    Each draw picks ``num_images`` face images at random (those whose ``extras["parts"]`` are
    not NaN and lie inside the image) and masks, in all of them, each part of ``parts`` and then a random square
    (fresh positions each draw; centre inside the face mask when ``random_within="object"``,
    anywhere with ``"image"``). Squares are ``window`` pixels, or with ``window=None`` sized per
    image from ``extras["part_radius"]`` (:func:`part_windows`); the random square of an image
    has the same size as its parts'.

    Returns a :class:`CorrespondenceTable`: per occlusion (``*parts``, then ``"random"``) and
    layer, the ``Delta`` of every draw (a :class:`~course_utils.stats.MeanStd`; its std is the
    sample standard deviation over draws, ``None`` for a single draw).
    """
    unknown = [part for part in parts if part not in PART_NAMES]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; choose from {PART_NAMES}")
    if random_within not in ("object", "image"):
        raise ValueError(f"random_within must be 'object' or 'image', got {random_within!r}")
    draws = check_positive_int(draws, "draws", "random draws of face images")
    num_images = check_positive_int(num_images, "num_images", "face images per draw")
    faces = _face_indices(dataset)
    if len(faces) < max(num_images, 2):
        raise ValueError(
            f"the dataset has {len(faces)} face images; num_images={num_images} needs at least "
            f"max(num_images, 2) of them"
        )
    generator = torch.Generator().manual_seed(seed)
    occlusions = [*parts, "random"]
    values: dict[tuple[str, str], list[float]] = {(o, layer): [] for o in occlusions for layer in layers}
    for _ in progress_bar(range(draws), desc="correspondence draws", leave=False, progress=progress):
        chosen = faces[torch.randperm(len(faces), generator=generator)[:num_images]]
        images = dataset.normalize(dataset.images[chosen])
        windows = (
            part_windows(dataset.extras["part_radius"][chosen])
            if window is None
            else torch.full((len(chosen),), window)
        )
        region = dataset.extras["masks"][chosen].bool()
        if random_within == "image":
            region = torch.ones_like(region)
        centres = {part: dataset.extras["parts"][chosen, PART_NAMES.index(part)] for part in parts}
        centres["random"] = random_centres(region, windows, generator)
        for occlusion in occlusions:
            deltas = correspondence_delta(model, images, centres[occlusion], windows, layers=layers, fill=fill)
            for layer, delta in deltas.items():
                values[(occlusion, layer)].append(delta)
    return CorrespondenceTable(
        tuple(occlusions), tuple(layers), {key: MeanStd.of(samples) for key, samples in values.items()}
    )
