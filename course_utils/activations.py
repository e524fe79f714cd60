"""Top-k activation mining, receptive fields and image patches (Fig. 2 of the paper).

:func:`mine_top_activations` streams a dataset through the model once and keeps, for every
channel of every requested layer, the ``k`` images with the strongest activation. As in the
paper, an image contributes at most one entry per channel: its activation is the maximum of
the feature map over all spatial locations, and that location is recorded. The running top-k
is merged batch by batch with tensor operations (no Python loop over channels); ties keep the
earlier image.

:func:`receptive_field` computes, along the model's named children, which input pixels a unit
of a layer can see; :func:`receptive_field_box` and :func:`image_patch` crop the patch of one
unit (clipped at the image borders), to show beside its deconvnet projection.

Two numbers summarize what the figures show: :func:`class_purity` (how many of a feature map's
top-k images share one class: it rises with depth in Fig 2) and :func:`linear_cka` (how alike two
representations of the same images are: compared with the final network, low layers settle
early in training and high layers late, Fig 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_eval_mode, check_images, check_indices, check_positive_int
from .layers import layer_path, pair, record_forward
from .progress import progress_bar

__all__ = [
    "TopK",
    "mine_top_activations",
    "class_purity",
    "linear_cka",
    "receptive_field",
    "receptive_field_box",
    "image_patch",
    "select_feature_maps",
]


@dataclass
class TopK:
    """The ``k`` strongest activations of each channel of one layer over a dataset.

    Attributes:
        layer: the layer's name.
        values: ``(C, k)`` activations, strongest first (per image: the maximum over locations).
        image_indices: ``(C, k)`` int64 indices of the images in the mined data (in streaming order).
        locations: ``(C, k, 2)`` int64 ``(y, x)`` of each maximum in the layer's output
            (``(0, 0)`` for vector layers such as ``fc6``).
    """

    layer: str
    values: Tensor
    image_indices: Tensor
    locations: Tensor

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def selections(self, channels: Sequence[int] | Tensor | None = None) -> Tensor:
        """``(len(channels) * k, 4)`` rows ``(image_index, channel, y, x)`` for
        :func:`course_utils.deconvnet.project`, channel by channel, strongest first."""
        num_channels = self.values.shape[0]
        channels = (
            torch.arange(num_channels)
            if channels is None
            else check_indices(channels, "channels", num_channels, f"layer {self.layer!r}'s channels")
        )
        channel_column = channels[:, None].expand(-1, self.k)
        return torch.stack(
            [self.image_indices[channels], channel_column, *self.locations[channels].unbind(-1)], dim=-1
        ).reshape(-1, 4)


def _image_batches(data: Any, batch_size: int) -> tuple[Iterable[Any], int | None]:
    """``(iterable of batches, number of batches or None)`` for a dataset, a tensor or batches."""
    if hasattr(data, "batches") and hasattr(data, "__len__"):
        return data.batches(batch_size), -(-len(data) // batch_size)
    if isinstance(data, Tensor):
        return data.split(batch_size), -(-len(data) // batch_size)
    return data, (len(data) if hasattr(data, "__len__") else None)


def _batch_images(batch: Any) -> Tensor:
    """The images of one batch: a tensor, or the first element of an ``(images, labels)`` pair."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"each batch must be a tensor (B, 3, H, W) or an (images, labels) pair, got {type(batch).__name__}"
        )
    return batch


def mine_top_activations(
    model: nn.Module,
    data: Any,
    layers: Sequence[str] | str,
    *,
    k: int = 9,
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, TopK]:
    """Find the ``k`` images that excite each channel of each layer most, in one pass.

    Args:
        model: a flat named model in eval mode.
        data: an :class:`~course_utils.data.ImageTensorDataset` (normalized batch by batch),
            a normalized ``(N, 3, H, W)`` tensor, or any iterable of normalized batches
            (tensors or ``(images, labels)`` pairs). Image indices count in this order.
        layers: layer names, e.g. ``["conv1", "conv5"]``.
        k: entries kept per channel.
        batch_size: images per forward pass (ignored for an iterable of batches).
        progress: show a progress bar.

    Returns:
        ``{layer: TopK}``. The forward hooks exist only during the call; each forward pass
        stops after the deepest requested layer.
    """
    layers = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))  # no duplicates
    if not layers:
        raise ValueError("give at least one layer name, e.g. layers=['conv5']")
    k = check_positive_int(k, "k", "entries kept per channel")
    batch_size = check_positive_int(batch_size, "batch_size", "images per forward pass")
    check_eval_mode(model)
    paths = {layer: layer_path(model, layer) for layer in layers}
    deepest = max(layers, key=lambda layer: len(paths[layer]))  # the forward stops after it
    top: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    widths: dict[str, int] = {}

    def batch_maxima(layer: str, output: Tensor) -> tuple[Tensor, Tensor]:
        """``(C, B)`` per-image maxima of each channel and their flat positions."""
        if output.ndim == 4:
            widths[layer] = output.shape[-1]
            values, positions = output.flatten(2).max(dim=2)
        elif output.ndim == 2:
            widths[layer] = 1
            values, positions = output, torch.zeros_like(output, dtype=torch.long)
        else:
            raise ValueError(f"layer {layer!r} outputs shape {tuple(output.shape)}; expected (B, C, H, W) or (B, F)")
        if not torch.isfinite(values).all():
            raise ValueError(f"layer {layer!r} has NaN or infinite activations; check the images for NaN/inf values")
        return values.T, positions.T

    def merge(layer: str, output: Tensor, first_index: int) -> None:
        values, positions = batch_maxima(layer, output)
        image_indices = torch.arange(first_index, first_index + values.shape[1], device=values.device)
        image_indices = image_indices.expand_as(values)
        if layer in top:
            old_values, old_images, old_positions = top[layer]
            values = torch.cat([old_values, values], dim=1)
            image_indices = torch.cat([old_images, image_indices], dim=1)
            positions = torch.cat([old_positions, positions], dim=1)
        values, order = values.sort(dim=1, descending=True, stable=True)
        keep = order[:, :k]
        top[layer] = (values[:, :k], image_indices.gather(1, keep), positions.gather(1, keep))

    batches, total = _image_batches(data, batch_size)
    seen = 0
    with torch.no_grad():
        for batch in progress_bar(batches, total=total, desc="mining top activations", progress=progress):
            images = _batch_images(batch)
            check_images(model, images, check_finite=False)  # the maxima are checked instead
            recording = record_forward(model, images, paths[deepest], keep=layers)
            for layer in layers:
                merge(layer, recording.outputs[layer], seen)
            seen += images.shape[0]
    if seen < k:
        raise ValueError(f"k={k} but the data holds only {seen} images; use k <= {seen}")
    results = {}
    for layer in layers:
        values, image_indices, positions = (t.cpu() for t in top[layer])
        locations = torch.stack([positions // widths[layer], positions % widths[layer]], dim=-1)
        results[layer] = TopK(layer, values, image_indices, locations)
    return results


def class_purity(top: TopK, labels: Tensor) -> Tensor:
    """``(C,)``: per channel, the fraction of its ``k`` top images that share their most common class.

    ``labels`` is ``(N,)`` int64, the classes of the mined images in mining order (e.g. the
    dataset's ``labels``). A value of 1 means all ``k`` images show one class; ``1 / k`` that
    no two share one.
    """
    if labels.ndim != 1 or labels.dtype != torch.long:
        raise ValueError(f"labels must be an int64 tensor of shape (N,), got {labels.dtype} {tuple(labels.shape)}")
    if int(top.image_indices.max()) >= len(labels):
        raise ValueError(
            f"the top-k images index up to {int(top.image_indices.max())} but labels has "
            f"{len(labels)} entries; pass the labels of the data that was mined"
        )
    classes = labels[top.image_indices]  # (C, k)
    return classes.mode(dim=1).values[:, None].eq(classes).float().mean(dim=1)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019) of two representations of the same images.

    ``x`` ``(N, ...)`` and ``y`` ``(N, ...)`` are the activations of the same ``N`` images (e.g. one
    layer in two training snapshots); each is flattened to ``(N, D)``, centred over the images,
    and ``CKA = <K_x, K_y> / (||K_x|| ||K_y||)`` with ``K = X X^T`` the ``(N, N)`` Gram matrices.
    1 means the two represent the images alike up to a rotation and scaling of the features.
    """
    if x.ndim < 2 or y.ndim < 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"x and y must be activations (N, ...) of the same N >= 2 images, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    grams = []
    for features in (x, y):
        features = features.detach().flatten(1).double()
        features = features - features.mean(dim=0)
        grams.append(features @ features.T)
    norms = grams[0].norm() * grams[1].norm()
    if norms == 0:
        raise ValueError(
            "a representation is constant over the images (all-zero centred Gram matrix); CKA is undefined for it"
        )
    return float((grams[0] * grams[1]).sum() / norms)


# --------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------

_POINTWISE = (
    nn.ReLU,
    nn.LocalResponseNorm,
    nn.Dropout,
    nn.Identity,
    nn.BatchNorm2d,
    nn.LeakyReLU,
    nn.ELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
)


def _receptive_field_axes(model: nn.Module, layer: str) -> tuple[list[int], list[int], list[int]]:
    """``(size, stride, offset)``, each a ``[rows, columns]`` pair, of the units of ``layer``."""
    size, stride, offset = [1, 1], [1, 1], [0, 0]
    for name, module in layer_path(model, layer):
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel = pair(module.kernel_size)
            step = pair(module.stride if module.stride is not None else module.kernel_size)
            padding = module.padding
            if isinstance(padding, str):
                raise ValueError(f"layer {name!r}: receptive_field needs numeric padding, got {padding!r}")
            padding = pair(padding)
            dilation = pair(getattr(module, "dilation", 1))
            for axis in range(2):
                effective_kernel = dilation[axis] * (kernel[axis] - 1) + 1
                size[axis] += (effective_kernel - 1) * stride[axis]
                offset[axis] -= padding[axis] * stride[axis]
                stride[axis] *= step[axis]
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            raise ValueError(
                f"layer {name!r} (adaptive pooling) depends on the input size; receptive_field is "
                "defined up to the last convolution or pooling layer before it"
            )
        elif not isinstance(module, _POINTWISE):
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) has no spatial receptive field: units from "
                "this layer on see the whole image. Use a convolutional layer (conv1..conv5, pool*, relu*)."
            )
    return size, stride, offset


def receptive_field(model: nn.Module, layer: str) -> tuple[int, int, int]:
    """``(size, stride, offset)`` of the units of ``layer`` in input pixels (square layers).

    Unit ``(y, x)`` sees input rows ``y * stride + offset`` ... ``y * stride + offset + size - 1``
    (and the same for columns); ``offset`` is negative when padding reaches outside the image.
    Computed from kernel sizes, strides, paddings and dilations of the convolutions and pools
    along the named children; pointwise layers (ReLU, normalization, dropout) change nothing.
    """
    size, stride, offset = _receptive_field_axes(model, layer)
    if size[0] != size[1] or stride[0] != stride[1] or offset[0] != offset[1]:
        raise ValueError(
            f"layer {layer!r} has a non-square receptive field (size {size}, stride {stride}, "
            f"offset {offset}); use receptive_field_box, which handles both axes"
        )
    return size[0], stride[0], offset[0]


def receptive_field_box(
    model: nn.Module, layer: str, y: int, x: int, image_size: int | Sequence[int]
) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` pixel box (bottom/right exclusive) that unit ``(y, x)`` of
    ``layer`` sees, clipped to an image of ``image_size`` (``H`` or ``(H, W)``)."""
    size, stride, offset = _receptive_field_axes(model, layer)
    height, width = pair(image_size)
    top, left = y * stride[0] + offset[0], x * stride[1] + offset[1]
    box = (max(top, 0), max(left, 0), min(top + size[0], height), min(left + size[1], width))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError(f"unit (y={y}, x={x}) of layer {layer!r} lies outside a {height}x{width} image")
    return box


def image_patch(model: nn.Module, image: Tensor, layer: str, y: int, x: int) -> Tensor:
    """The part of ``image`` ``(C, H, W)`` that unit ``(y, x)`` of ``layer`` sees, clipped at the
    borders: ``(C, h, w)`` with ``h, w <= receptive field size``."""
    if not isinstance(image, Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be one (C, H, W) tensor, got {shape}; index a batch with images[i]")
    top, left, bottom, right = receptive_field_box(model, layer, y, x, image.shape[-2:])
    return image[:, top:bottom, left:right]


def select_feature_maps(top: TopK, labels: Tensor | None = None, num_maps: int = 6) -> list[int]:
    """Pick ``num_maps`` feature maps of a layer worth showing.

    Maps are taken strongest first (mean of their top-k values). Given ``labels``, at most one
    map per *dominant class* (the most common class among the map's top-k images) is taken
    first, so a figure of a high layer does not show six detectors of one class; when fewer
    classes occur than ``num_maps``, the strongest remaining maps fill up.

    Args:
        top: the layer's :class:`~course_utils.activations.TopK`.
        labels: ``(N,)`` class labels of the mined images (``dataset.labels``), or ``None`` for
            simply the strongest maps (low layers, whose features are not class-specific).
        num_maps: how many maps to return (fewer when the layer has fewer).
    """
    num_maps = check_positive_int(num_maps, "num_maps", "feature maps to pick")
    by_strength = top.values.mean(1).argsort(descending=True, stable=True).tolist()
    if labels is None:
        return by_strength[:num_maps]
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or int(top.image_indices.max()) >= len(labels):
        raise ValueError(
            f"labels must be the (N,) labels of the mined images; got shape {tuple(labels.shape)} for image "
            f"indices up to {int(top.image_indices.max())}"
        )
    dominant = labels[top.image_indices].mode(dim=1).values.tolist()
    picked, classes = [], set()
    for channel in by_strength:
        if dominant[channel] not in classes:
            picked.append(channel)
            classes.add(dominant[channel])
    picked = picked[:num_maps]
    picked += [channel for channel in by_strength if channel not in picked][: num_maps - len(picked)]
    return picked
