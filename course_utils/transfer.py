"""Feature generalization (Zeiler & Fergus, section 5, Tables 4-7 in spirit).

The paper freezes the ImageNet-trained layers 1-7 and trains only a new softmax (fc8) on
another dataset, and it probes each layer with a linear classifier to show that higher
layers are more discriminative. This module does both on any model whose children carry
the paper's names:

* :func:`extract_features`: activations of named layers
  (:func:`course_utils.layers.layer_outputs`), batched over a dataset and flattened to ``(N, D)``.
* :func:`train_softmax_classifier`: softmax regression on standardized features (Adam,
  mini-batches, seconds on a CPU); the standardization is folded into the returned
  ``nn.Linear`` so that it applies to raw features.
* :func:`linear_probe` / :func:`probe_layers`: held-out accuracy of such a classifier per layer;
  :func:`linear_probe_on_pixels` is the same classifier on raw pixels (the baseline).
* :func:`few_shot_subset`: exactly ``per_class`` training images per class, seeded.
* :func:`finetune_softmax`: the pretrained model with a new ``fc8`` for the new classes,
  everything else frozen; :func:`few_shot_comparison` sets it against training the same
  architecture from scratch (:func:`course_utils.train.train`) on the same few images.

Images are normalized by each dataset's own ``mean``/``std``. A pretrained model expects the
statistics it was trained with, so give a dataset of new classes those
(:func:`with_statistics`, e.g. with the ``mean``/``std`` of the model's checkpoint metadata).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data.core import ImageTensorDataset
from .layers import get_layer, layer_names, layer_outputs
from .progress import progress_bar
from .stats import group_mean_std
from .train import EVAL_BATCH_SIZE, TrainConfig, train

__all__ = [
    "extract_features",
    "train_softmax_classifier",
    "linear_probe",
    "probe_layers",
    "linear_probe_on_pixels",
    "few_shot_subset",
    "finetune_softmax",
    "few_shot_comparison",
    "FewShotComparison",
    "FewShotRun",
    "PRETRAINED",
    "SCRATCH",
    "with_statistics",
]


def _pooled(activation: torch.Tensor, pool_to: int | None) -> torch.Tensor:
    """Average-pool ``(N, C, h, w)`` maps to ``(N, C, pool_to, pool_to)`` (when larger) and flatten."""
    if pool_to is not None and activation.ndim == 4 and activation.shape[-1] > pool_to:
        activation = F.adaptive_avg_pool2d(activation, pool_to)
    return activation.flatten(1)


def _features_by_layer(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layers: Sequence[str],
    pool_to: int | None,
    batch_size: int,
    progress: bool,
) -> dict[str, torch.Tensor]:
    """One pass over ``dataset``: ``{layer: (N, D)}`` flattened (optionally pooled) features."""
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    batches = dataset.batches(batch_size)
    total = -(-len(dataset) // batch_size)
    for images, _ in progress_bar(batches, total=total, desc="features", leave=False, progress=progress):
        for name, activation in layer_outputs(model, images, layers).items():
            chunks[name].append(_pooled(activation, pool_to))
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def extract_features(
    model: nn.Module,
    dataset: ImageTensorDataset,
    layer: str,
    *,
    pool_to: int | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    progress: bool = True,
) -> torch.Tensor:
    """Flattened activations ``(N, D)`` of ``layer`` for every image of ``dataset`` (in order).

    ``pool_to``: average-pool convolutional maps larger than ``pool_to x pool_to`` down to it
    before flattening (keeps early layers' features small enough to probe); ``None`` keeps
    them whole, so ``D = C * h * w``.
    """
    return _features_by_layer(model, dataset, [layer], pool_to, batch_size, progress)[layer]


def _check_features(features: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if features.ndim != 2:
        raise ValueError(
            f"{what} features must have shape (N, D), got {tuple(features.shape)}; "
            "flatten them with features.flatten(1)"
        )
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"{what} labels must have shape ({features.shape[0]},) to match the features, got {tuple(labels.shape)}"
        )


def train_softmax_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None = None,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> nn.Linear:
    """Softmax regression on ``(N, D)`` features; returns an ``nn.Linear(D, num_classes)``.

    Features are standardized with their training mean and standard deviation, the
    classifier is trained with Adam on shuffled mini-batches (cross-entropy, L2 weight decay),
    and the standardization is then folded into the returned layer's weight and bias, so it
    takes raw features: ``logits = layer(features)``. Same seed, same classifier.
    """
    _check_features(features, labels, "training")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    features = features.float()
    mean = features.mean(0)
    scale = features.std(0, unbiased=False).clamp_min(1e-6)
    standardized = (features - mean) / scale
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(features.shape[1], num_classes)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(classifier(standardized[batch]), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    with torch.no_grad():
        classifier.weight.div_(scale)
        classifier.bias.sub_(classifier.weight @ mean)
    return classifier.requires_grad_(False)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
    batch_size: int = 256,
) -> float:
    """Accuracy on ``val_features (M, D)`` of a softmax classifier trained on ``train_features (N, D)``.

    See :func:`train_softmax_classifier` for the training; labels are ``(N,)`` / ``(M,)`` int64.
    """
    _check_features(train_features, train_labels, "training")
    _check_features(val_features, val_labels, "validation")
    if val_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"training features have {train_features.shape[1]} dimensions but validation "
            f"features {val_features.shape[1]}; extract both from the same layer"
        )
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    classifier = train_softmax_classifier(
        train_features, train_labels, num_classes, epochs, lr, weight_decay, batch_size, seed
    )
    with torch.no_grad():
        predicted = classifier(val_features.float()).argmax(1)
    return (predicted == val_labels).float().mean().item()


def probe_layers(
    model: nn.Module,
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset,
    layers: Sequence[str],
    *,
    pool_to: int | None = 4,
    progress: bool = True,
    **probe_options: Any,
) -> dict[str, float]:
    """Linear-probe validation accuracy of each named layer: ``{layer: accuracy}``.

    Features come from one pass over each dataset; convolutional maps are average-pooled to
    ``pool_to x pool_to`` first (``None``: keep them whole). ``probe_options`` go to
    :func:`linear_probe` (epochs, lr, weight_decay, seed, batch_size).
    """
    train_features = _features_by_layer(model, train_set, layers, pool_to, EVAL_BATCH_SIZE, progress)
    val_features = _features_by_layer(model, val_set, layers, pool_to, EVAL_BATCH_SIZE, progress)
    return {
        layer: linear_probe(
            train_features[layer], train_set.labels, val_features[layer], val_set.labels, **probe_options
        )
        for layer in progress_bar(layers, desc="probes", leave=False, progress=progress)
    }


def linear_probe_on_pixels(
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset,
    pool_to: int | None = None,
    **probe_options: Any,
) -> float:
    """Validation accuracy of :func:`linear_probe` on raw normalized pixels: the "no network" baseline.

    Pixels ``(N, 3, H, W)`` are normalized with each dataset's ``mean``/``std``, optionally
    average-pooled to ``pool_to x pool_to`` (as :func:`probe_layers` pools conv maps) and
    flattened. Whole ``S x S`` images give ``D = 3 S^2`` features (49,152 at 128 pixels, about
    2 GB as float32 for 10,000 images); pooling is linear, so a probe on pooled pixels is still a
    linear classifier of the raw pixels. ``probe_options`` go to :func:`linear_probe`.
    """
    if train_set.class_names != val_set.class_names:
        raise ValueError("train_set and val_set must have the same class_names (load both with the same classes=)")
    features = [_pooled(subset.normalize(subset.images), pool_to) for subset in (train_set, val_set)]
    return linear_probe(features[0], train_set.labels, features[1], val_set.labels, **probe_options)


def with_statistics(dataset: ImageTensorDataset, mean: Sequence[float], std: Sequence[float]) -> ImageTensorDataset:
    """The same images, labels and extras, normalized with ``mean``/``std`` (3 values each, [0, 1] units)."""
    return ImageTensorDataset(dataset.images, dataset.labels, dataset.class_names, mean, std, dataset.extras)


def few_shot_subset(dataset: ImageTensorDataset, per_class: int, seed: int = 0) -> ImageTensorDataset:
    """A subset with exactly ``per_class`` images of every class, drawn at random (seeded).

    Rows keep their original order. Raises ``ValueError`` when a class has fewer images.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, name in enumerate(dataset.class_names):
        members = (dataset.labels == label).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(
                f"class {name!r} has only {len(members)} images, fewer than per_class={per_class}; "
                "lower per_class or use a larger split"
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return dataset.subset(torch.cat(chosen).sort().values)


def _classifier_input_layer(model: nn.Module) -> str:
    """Name of the child that feeds ``fc8`` (e.g. ``drop7`` in ZFNet, ``relu7`` in AlexNet)."""
    names = layer_names(model)
    get_layer(model, "fc8")
    position = names.index("fc8")
    if position == 0:
        raise ValueError("fc8 is the model's first layer; there are no features to freeze")
    return names[position - 1]


def finetune_softmax(
    model: nn.Module,
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset,
    *,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> tuple[nn.Module, float]:
    """Keep ``model``'s features frozen and train only a new ``fc8`` for ``train_set``'s classes.

    The features entering ``fc8`` (eval mode: no dropout) are extracted once, a softmax
    classifier is fitted on them (:func:`train_softmax_classifier`) and installed as the new
    ``fc8`` of a copy of ``model`` (``model`` itself is untouched). Returns the new model
    (eval mode, ``num_classes`` outputs) and its accuracy on ``val_set``.
    """
    feature_layer = _classifier_input_layer(model)
    features = extract_features(model, train_set, feature_layer, progress=progress)
    classifier = train_softmax_classifier(
        features, train_set.labels, train_set.num_classes, epochs, lr, weight_decay, batch_size, seed
    )
    transferred = copy.deepcopy(model).requires_grad_(False)
    transferred.fc8 = classifier
    config = getattr(transferred, "config", None)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        transferred.config = dataclasses.replace(config, num_classes=train_set.num_classes)  # type: ignore[assignment]
    transferred.eval()
    with torch.no_grad():
        predicted = torch.cat([transferred(images).argmax(1) for images, _ in val_set.batches(256)])
    return transferred, (predicted == val_set.labels).float().mean().item()


#: The two methods of :func:`few_shot_comparison`.
PRETRAINED, SCRATCH = "pretrained + softmax", "from scratch"


@dataclass(frozen=True)
class FewShotRun:
    """One training run of :func:`few_shot_comparison` (``method`` is :data:`PRETRAINED` or
    :data:`SCRATCH`)."""

    method: str
    per_class: int
    seed: int
    val_accuracy: float
    seconds: float


@dataclass
class FewShotComparison:
    """The runs of :func:`few_shot_comparison`, in order; ``extend`` adds those of more seeds."""

    runs: list[FewShotRun] = field(default_factory=list)

    def extend(self, other: FewShotComparison) -> None:
        self.runs.extend(other.runs)

    def accuracies(self, method: str) -> dict[int, list[float]]:
        """``{per_class: [val accuracy of each seed]}`` of one method."""
        table: dict[int, list[float]] = {}
        for run in self.runs:
            if run.method == method:
                table.setdefault(run.per_class, []).append(run.val_accuracy)
        return table

    def records(self) -> list[dict[str, Any]]:
        """The runs as dicts (for :func:`course_utils.figures.mean_std_lines`)."""
        return [dataclasses.asdict(run) for run in self.runs]

    def format(self) -> str:
        """A text table: images per class down, the two methods across, accuracy in percent
        (mean +- std over seeds)."""
        summaries = group_mean_std(self.records(), ("method", "per_class"), "val_accuracy")
        shots = sorted({run.per_class for run in self.runs})
        lines = [f"{'images/class':>12}  {PRETRAINED:>22}  {SCRATCH:>22}   (accuracy %, mean +- std over seeds)"]
        for per_class in shots:
            cells = [
                summaries[(method, per_class)].format(1, scale=100) if (method, per_class) in summaries else "-"
                for method in (PRETRAINED, SCRATCH)
            ]
            lines.append(f"{per_class:>12}  {cells[0]:>22}  {cells[1]:>22}")
        return "\n".join(lines)


def few_shot_comparison(
    model: nn.Module,
    train_pool: ImageTensorDataset,
    val_set: ImageTensorDataset,
    *,
    shots: Sequence[int] = (1, 2, 5, 10, 20),
    seeds: Sequence[int] = (0, 1, 2),
    scratch_config: TrainConfig | None = None,
    progress: bool = True,
) -> FewShotComparison:
    """Pretrained features + new softmax vs the same architecture trained from scratch (paper, Fig 9).

    For every ``per_class`` in ``shots`` and every seed, both methods see the same
    :func:`few_shot_subset` of ``train_pool``. The scratch run uses
    :func:`course_utils.train.train` with ``scratch_config`` (default: 30 epochs, no
    augmentation beyond flips) and ``model.config`` as architecture, its batch size capped at
    the subset size. Returns a :class:`FewShotComparison`: per ``per_class`` and seed, the
    :data:`PRETRAINED` run, then the :data:`SCRATCH` run.
    """
    scratch_config = scratch_config or TrainConfig(epochs=30, batch_size=32, augment="flip")
    comparison = FewShotComparison()
    runs = [(per_class, seed) for per_class in shots for seed in seeds]
    for per_class, seed in progress_bar(runs, desc="few-shot runs", progress=progress):
        subset = few_shot_subset(train_pool, per_class, seed)
        start = time.perf_counter()
        _, accuracy = finetune_softmax(model, subset, val_set, seed=seed)
        comparison.runs.append(FewShotRun(PRETRAINED, per_class, seed, accuracy, time.perf_counter() - start))
        config = dataclasses.replace(
            scratch_config, seed=seed, out_dir=None, batch_size=min(scratch_config.batch_size, len(subset))
        )
        start = time.perf_counter()
        _, history = train(config, subset, val_set, getattr(model, "config", None), progress=False)
        comparison.runs.append(
            FewShotRun(SCRATCH, per_class, seed, history[-1]["val_acc"], time.perf_counter() - start)
        )
    return comparison
