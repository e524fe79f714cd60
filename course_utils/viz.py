"""Figure helpers. Every function returns a matplotlib ``Figure`` (it does not call ``show``).

Conventions: titles and axis labels on every figure; images are shown with ``imshow`` in
[0, 1]; signed maps use a diverging colour map centred on zero, probability maps the
perceptually uniform ``viridis`` (both print well in greyscale).
"""
from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .data import ImageTensorDataset

__all__ = ["to_display", "example_grid", "training_curves", "confusion_figure"]


def to_display(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor in [0, 1] (or uint8) -> ``(H, W, 3)`` float array for ``imshow``."""
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    return image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def example_grid(dataset: ImageTensorDataset, per_class: int = 6, seed: int = 0) -> Figure:
    """A grid with one row per class and ``per_class`` random examples of it."""
    generator = torch.Generator().manual_seed(seed)
    rows = dataset.num_classes
    figure, axes = plt.subplots(rows, per_class, figsize=(1.3 * per_class, 1.3 * rows), squeeze=False)
    for label, row in enumerate(axes):
        members = torch.nonzero(dataset.labels == label).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        for axis, index in zip(row, chosen.tolist()):
            axis.imshow(to_display(dataset.images[index]))
        for axis in row:
            axis.set_xticks([]), axis.set_yticks([])
        row[0].set_ylabel(dataset.class_names[label], rotation=0, ha="right", va="center")
    figure.suptitle(f"{per_class} examples per class")
    figure.tight_layout()
    return figure


def training_curves(history: Sequence[dict[str, Any]], title: str = "Training") -> Figure:
    """Loss and accuracy per epoch (train and validation) from a training history."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.5))
    for split, style in (("train", "-o"), ("val", "--s")):
        loss_axis.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        accuracy_axis.plot(epochs, [r[f"{split}_acc"] for r in history], style, label=split)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title=f"{title}: loss")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy", ylim=(0, 1))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str], title: str = "Confusion matrix") -> Figure:
    """Row-normalized confusion matrix (row = true class) with the counts written in the cells."""
    counts = matrix.double()
    rates = (counts / counts.sum(1, keepdim=True).clamp_min(1)).numpy()
    size = 0.55 * len(class_names) + 2
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix.numpy()):
        if count:
            axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if rates[row, column] > 0.5 else "black")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.colorbar(image, ax=axis, label="fraction of the true class")
    figure.tight_layout()
    return figure
