"""Invariance of features to translation, scaling and rotation (Zeiler & Fergus, Fig. 5).

Each image is transformed by a range of amounts; for every amount we measure how far the
feature vectors of chosen layers move away from those of the untransformed image, the
probability of the true class and the most probable class.

Transformations (:func:`transform_images`, torchvision's ``transforms.v2.functional``,
bilinear interpolation) act on normalized images; the area that comes in from outside the
image is filled with ``fill``, by default 0 = the dataset mean (grey):

* ``"translate"``: vertical shift by ``amount`` pixels, positive moves the content down;
* ``"scale"``: zoom by the factor ``amount`` about the image centre (> 1 enlarges);
* ``"rotate"``: rotation by ``amount`` degrees about the centre, positive counter-clockwise.

Distances: ``distance = ||f(T(x)) - f(x)||_2`` with ``f`` the layer's output flattened to a
vector. The paper plots these raw distances, one axis per layer; since layers differ in size
and scale we also give ``relative_distance = distance / ||f(x)||_2`` (NaN or inf where the
original feature vector is zero), which puts layer 1 and layer 7 on one axis.

Images: every transformation acts about the image centre, and an object near the border would
partly leave the picture. :func:`centred_correct_images` picks, per class, the correctly
classified images whose object (the centroid of its mask, :func:`mask_centroids`) lies nearest
the centre, as the paper's photos are centred on their object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

from .checks import check_eval_mode, check_fill, check_float_images, check_images, check_positive_int
from .data.core import ImageTensorDataset
from .layers import last_layer, layer_outputs, layer_path
from .train import predict

__all__ = [
    "AMOUNT_LABELS",
    "TRANSFORMATIONS",
    "InvarianceCurves",
    "transform_images",
    "invariance_curves",
    "mask_centroids",
    "centred_correct_images",
]

#: Kinds of transformation understood by :func:`transform_images`.
TRANSFORMATIONS = ("translate", "scale", "rotate")
#: Axis label of each kind's amount (figures, explorers and notebooks use these).
AMOUNT_LABELS = {
    "translate": "vertical shift (pixels, + = down)",
    "scale": "scale factor (> 1 enlarges)",
    "rotate": "rotation (degrees, counter-clockwise)",
}


@dataclass
class InvarianceCurves:
    """Feature distances and predictions per image and transformation amount.

    Attributes:
        kind: the transformation ("translate", "scale" or "rotate").
        amounts: ``(A,)`` float64 amounts (pixels, factor or degrees).
        layers: names of the layers measured.
        distances: per layer, ``(N, A)`` Euclidean distance between the feature vectors of
            the transformed and the original image.
        relative_distances: per layer, ``(N, A)`` distance divided by the norm of the
            original feature vector.
        probabilities: ``(N, A)`` probability of ``target`` on the transformed images.
        top_classes: ``(N, A)`` int64 most probable class on the transformed images.
        target: ``(N,)`` int64 class whose probability is tracked, per image.
        original_probabilities: ``(N,)`` probability of ``target`` on the originals.
    """

    kind: str
    amounts: torch.Tensor
    layers: tuple[str, ...]
    distances: dict[str, torch.Tensor]
    relative_distances: dict[str, torch.Tensor]
    probabilities: torch.Tensor
    top_classes: torch.Tensor
    target: torch.Tensor
    original_probabilities: torch.Tensor


def _check_kind(kind: str) -> None:
    if kind not in TRANSFORMATIONS:
        raise ValueError(f"unknown transformation {kind!r}; choose one of {', '.join(TRANSFORMATIONS)}")


def _check_amount(kind: str, amount: float) -> None:
    if not math.isfinite(amount):
        raise ValueError(f"{kind} amount must be finite, got {amount}")
    if kind == "scale" and amount <= 0:
        raise ValueError(f"scale factor must be > 0 (1 = unchanged), got {amount}")


def transform_images(
    images: torch.Tensor, kind: str, amount: float, fill: float | Sequence[float] | torch.Tensor = 0.0
) -> torch.Tensor:
    """Translate vertically, scale or rotate normalized ``(N, 3, H, W)`` images; same shape out.

    ``amount``: pixels (positive = down), factor about the centre, or degrees (positive =
    counter-clockwise). ``fill``: value (or per-channel values) of the area that comes in
    from outside; 0 is the dataset mean in normalized space.
    """
    check_float_images(images)
    if not torch.isfinite(images.sum()):
        raise ValueError("images contain NaN or infinite values")
    _check_kind(kind)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) and not hasattr(amount, "__float__"):
        raise ValueError(f"amount must be a number, got {amount!r}")
    amount = float(amount)
    _check_amount(kind, amount)
    fill_values = check_fill(fill, "fill").tolist()
    bilinear = InterpolationMode.BILINEAR
    if kind == "rotate":
        return TF.rotate(images, amount, interpolation=bilinear, fill=fill_values)
    translate = [0.0, amount] if kind == "translate" else [0.0, 0.0]
    scale = amount if kind == "scale" else 1.0
    return TF.affine(
        images, angle=0.0, translate=translate, scale=scale, shear=[0.0, 0.0], interpolation=bilinear, fill=fill_values
    )


def _forward_features(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``images`` in batches; return the flattened features ``(N, D)`` per layer and the
    softmax ``(N, K)`` of the model's last layer."""
    last = last_layer(model)
    features: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    probabilities = []
    for batch in images.split(batch_size):
        outputs = layer_outputs(model, batch, [*layers, last])
        for name in layers:
            features[name].append(outputs[name].flatten(1))
        probabilities.append(outputs[last].softmax(dim=1))
    return {name: torch.cat(parts) for name, parts in features.items()}, torch.cat(probabilities)


def invariance_curves(
    model: nn.Module,
    images: torch.Tensor,
    kind: str,
    amounts: Sequence[float] | torch.Tensor,
    *,
    layers: Sequence[str] = ("relu1", "relu7"),
    target: Sequence[int] | torch.Tensor | None = None,
    fill: float | Sequence[float] = 0.0,
    batch_size: int = 64,
) -> InvarianceCurves:
    """Measure how features and predictions change as ``images`` are transformed (Fig. 5).

    Args:
        model: a model with named layers (e.g. :class:`~course_utils.models.ZFNet`) returning
            ``(N, num_classes)`` logits; in eval mode.
        images: ``(N, 3, H, W)`` normalized float images.
        kind: "translate", "scale" or "rotate" (see :func:`transform_images`).
        amounts: the ``A`` amounts to apply (pixels, factors or degrees); include the
            identity (0, 1 or 0) to anchor the curves.
        layers: layers whose outputs are compared; the defaults are the ZFNet's layer 1 and
            layer 7 after rectification.
        target: ``(N,)`` true classes; ``None`` takes the classes the model predicts
            for the untransformed images.
        fill: value of the area that comes in from outside (0 = dataset mean).
        batch_size: images per forward pass.

    Returns:
        :class:`InvarianceCurves` with ``(N, A)`` distances per layer and predictions.
    """
    check_float_images(images)
    check_eval_mode(model)
    check_images(model, images)
    _check_kind(kind)
    amount_values = torch.as_tensor(amounts, dtype=torch.float64).flatten()
    if amount_values.numel() == 0:
        raise ValueError("amounts is empty; pass the transformation amounts to measure, e.g. range(-8, 9, 2)")
    for amount in amount_values.tolist():
        _check_amount(kind, amount)
    layers = tuple(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers must name distinct layers, at least one (e.g. ('relu1', 'relu7')), got {layers}")
    check_eval_mode(model)
    for name in layers:
        layer_path(model, name)  # a clear error listing the valid names
    batch_size = check_positive_int(batch_size, "batch_size")

    original, original_softmax = _forward_features(model, images, layers, batch_size)
    num_images, num_classes = original_softmax.shape
    if target is None:
        targets = original_softmax.argmax(dim=1)
    else:
        targets = torch.as_tensor(target)
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise ValueError(f"target must be integer class indices, got {targets.dtype}")
        targets = targets.to(torch.long).flatten().to(original_softmax.device)
        if targets.shape != (num_images,):
            raise ValueError(f"target must have shape ({num_images},), got {tuple(targets.shape)}")
        if bool(((targets < 0) | (targets >= num_classes)).any()):
            raise ValueError(f"target must lie in 0..{num_classes - 1} (the model's classes)")
    rows = torch.arange(num_images, device=targets.device)
    distances = {name: torch.empty(num_images, len(amount_values), dtype=torch.float64) for name in layers}
    probabilities = torch.empty(num_images, len(amount_values))
    top_classes = torch.empty(num_images, len(amount_values), dtype=torch.long)
    for column, amount in enumerate(amount_values.tolist()):
        transformed = transform_images(images, kind, amount, fill)
        features, softmax = _forward_features(model, transformed, layers, batch_size)
        for name in layers:
            distances[name][:, column] = (features[name] - original[name]).double().norm(dim=1).cpu()
        probabilities[:, column] = softmax[rows, targets].float().cpu()
        top_classes[:, column] = softmax.argmax(dim=1).cpu()

    norms = {name: original[name].double().norm(dim=1).cpu() for name in layers}
    return InvarianceCurves(
        kind=kind,
        amounts=amount_values,
        layers=layers,
        distances=distances,
        relative_distances={name: distances[name] / norms[name][:, None] for name in layers},
        probabilities=probabilities,
        top_classes=top_classes,
        target=targets.cpu(),
        original_probabilities=original_softmax[rows, targets].float().cpu(),
    )


def mask_centroids(masks: torch.Tensor) -> torch.Tensor:
    """Centroids ``(N, 2)`` as ``(y, x)`` pixels (pixel ``(row, col)`` at ``y = row, x = col``) of
    ``(N, H, W)`` bool object masks; NaN for an empty mask."""
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise ValueError(f"masks must be a bool tensor of shape (N, H, W), got {masks.dtype} {tuple(masks.shape)}")
    weights = masks.double()
    area = weights.sum(dim=(1, 2))
    rows = torch.arange(masks.shape[1], dtype=torch.float64)[:, None]
    cols = torch.arange(masks.shape[2], dtype=torch.float64)[None, :]
    x = (weights * cols).sum(dim=(1, 2)) / area
    y = (weights * rows).sum(dim=(1, 2)) / area
    return torch.stack([y, x], dim=1)  # 0 / 0 = NaN where the mask is empty


def centred_correct_images(
    model: nn.Module, dataset: ImageTensorDataset, per_class: int = 2, search: int = 500
) -> torch.Tensor:
    """Indices ``(M,)`` int64 into ``dataset`` of the images to transform (Fig 5, notebook 04).

    Among the first ``search`` images, for each class (in ``dataset.class_names`` order) the
    ``per_class`` ones that ``model`` classifies correctly and whose object mask
    (``extras["masks"]``) has its centroid nearest the image centre, nearest first. A class with
    fewer such images contributes what it has; images with an empty mask are never chosen.
    Deterministic.
    """
    if "masks" not in dataset.extras:
        raise ValueError(
            "the dataset has no object masks (extras['masks']); use the embedded dataset "
            "(course_utils.data.load_embedded), which records every object's mask"
        )
    if per_class < 1 or search < 1:
        raise ValueError(f"per_class and search must be at least 1, got {per_class} and {search}")
    candidates = dataset.subset(range(min(search, len(dataset))))
    correct = predict(model, candidates).argmax(dim=1) == candidates.labels
    height, width = candidates.images.shape[-2:]
    y, x = mask_centroids(candidates.extras["masks"].bool()).unbind(dim=1)
    off_centre = torch.hypot(x - (width - 1) / 2, y - (height - 1) / 2)
    chosen = []
    for label in range(candidates.num_classes):
        rows = torch.nonzero((candidates.labels == label) & correct & ~off_centre.isnan()).flatten()
        chosen.append(rows[off_centre[rows].argsort(stable=True)[:per_class]])
    return torch.cat(chosen)
