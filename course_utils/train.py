"""Training with the paper's recipe, as a library and a command line.

Recipe (Zeiler & Fergus, section 3): cross-entropy, SGD with momentum 0.9, a learning rate
annealed over training (here: one warm-up epoch, then cosine decay to zero), conv1 initialized
with standard deviation 0.01, and after every step any conv filter whose RMS exceeds 0.1 is
renormalized to 0.1. The paper's dropout 0.5 in fc6/fc7 is available (``--dropout 0.5``) but
off by default: with the course's few epochs it keeps the network from fitting its data.
Runs are seeded and deterministic; checkpoints are written atomically at chosen epochs (for
the feature-evolution figure) and at the end.

Command line (also under ``torchrun --nproc_per_node=2``, DDP with the gloo backend)::

    python -m course_utils.train --dataset embedded --epochs 5 --snapshots 1,2,3 --out data/checkpoints
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_positive_int
from .data import ImageTensorDataset, load_dataset, load_image_folder
from .data.core import atomic_write, hold_out
from .models import ZFNet, ZFNetConfig, save_checkpoint
from .progress import progress_bar
from .threads import add_threads_option, set_torch_threads

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "train",
    "evaluate",
    "EVAL_BATCH_SIZE",
    "predict",
    "confusion_matrix",
    "renormalize_filters",
    "largest_filter_rms",
    "augment_batch",
    "snapshot_name",
    "main",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; nothing of the run was saved after it."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (the defaults train the shipped model).

    Attributes:
        epochs: passes over the training set.
        batch_size: global batch size (split across processes under DDP). The paper used 128
            on 1.3M images; on 10,000 images a batch of 32 gives the network four times as many
            updates per epoch, which it needs to leave the initial plateau within a few epochs.
        lr: peak learning rate, reached after ``warmup_epochs`` and annealed by a cosine.
        momentum, weight_decay: SGD settings.
        max_filter_rms: conv filters whose RMS exceeds this are rescaled to it (paper: 0.1).
        augment: "none", "flip" or "crop_flip" (random 4-pixel shifts and horizontal flips;
            use it for real photos, where the training set is small for its variety).
        seed: seeds initialization, batch order, dropout and augmentation.
        snapshot_epochs: epochs after which a checkpoint is written (:func:`snapshot_name`); a
            fraction such as 0.25 saves the network that far into the run (after
            ``round(0.25 * steps per epoch)`` steps), for the early stages of Fig 4.
        out_dir: where checkpoints go (``None``: none written).
        snapshot_half: store snapshots in float16 (the final checkpoint stays float32).
        validate_every_epoch: measure validation loss/accuracy after every epoch; when False only
            after the last (earlier epochs record ``None``), which saves time in the ablation.
    """

    epochs: int = 12
    batch_size: int = 32
    lr: float = 0.01
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_filter_rms: float | None = 0.1
    augment: str = "flip"
    seed: int = 0
    snapshot_epochs: Sequence[float] = field(default_factory=tuple)
    out_dir: str | None = None
    snapshot_half: bool = True
    validate_every_epoch: bool = True

    def __post_init__(self) -> None:
        if self.augment not in ("none", "flip", "crop_flip"):
            raise ValueError(f"augment must be 'none', 'flip' or 'crop_flip', got {self.augment!r}")
        self.epochs = check_positive_int(self.epochs, "epochs", "passes over the training set")
        self.batch_size = check_positive_int(self.batch_size, "batch_size", "images per step")
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("momentum, weight_decay and warmup_epochs must be >= 0")
        if self.max_filter_rms is not None and not (math.isfinite(self.max_filter_rms) and self.max_filter_rms > 0):
            raise ValueError(f"max_filter_rms must be > 0 or None, got {self.max_filter_rms!r}")
        bad = [
            epoch
            for epoch in self.snapshot_epochs
            if isinstance(epoch, bool)
            or not isinstance(epoch, (int, float))
            or not (math.isfinite(epoch) and 0 < epoch <= self.epochs)
        ]
        if bad:
            raise ValueError(
                f"snapshot epochs {bad} are not points of this run: give epochs in (0, {self.epochs}], e.g. 0.25, 1, 2"
            )
        if self.out_dir is not None and Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            raise ValueError(f"out_dir {self.out_dir} is a file, not a folder; pass a folder for the checkpoints")


def snapshot_name(epoch: float) -> str:
    """File name of the snapshot after ``epoch`` epochs: ``epoch_05.pt``, or ``epoch_00.25.pt`` for a fraction."""
    return f"epoch_{int(epoch):02d}.pt" if float(epoch).is_integer() else f"epoch_{epoch:05.2f}.pt"


def _conv_filters(model: nn.Module) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """Each conv layer of ``model`` with its filters' RMS ``(C_out, 1, 1, 1)`` (a filter: one
    output channel's weights ``(C_in, kH, kW)``)."""
    return [
        (module, module.weight.detach().pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt())
        for module in model.modules()
        if isinstance(module, nn.Conv2d)
    ]


def largest_filter_rms(model: nn.Module) -> float:
    """The largest RMS of any conv filter of ``model`` (0.0 when it has no conv layer)."""
    return max((float(rms.max()) for _, rms in _conv_filters(model)), default=0.0)


def renormalize_filters(model: nn.Module, max_rms: float = 0.1) -> int:
    """Rescale every conv filter whose RMS exceeds ``max_rms`` to exactly ``max_rms``.

    A filter is one output channel's weights ``(C_in, kH, kW)``. Returns how many were rescaled.
    """
    rescaled = 0
    with torch.no_grad():
        for module, rms in _conv_filters(model):
            scale = (max_rms / rms).clamp(max=1.0)
            rescaled += int((scale < 1.0).sum())
            module.weight.mul_(scale)
    return rescaled


def augment_batch(images: torch.Tensor, mode: str, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random shifts (``crop_flip``) and horizontal flips of a ``(B, C, H, W)`` batch."""
    if mode == "none":
        return images
    batch, _, height, width = images.shape
    if mode == "crop_flip":
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
        images = torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())]
        )
    flips = torch.rand(batch, generator=generator) < 0.5
    return torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)


#: Images per forward pass without gradients (:func:`predict`, feature extraction): on a CPU
#: small batches are faster than large ones, since each layer's activations stay in its caches.
EVAL_BATCH_SIZE = 32


@torch.no_grad()
def predict(model: nn.Module, dataset: ImageTensorDataset, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """Softmax probabilities ``(N, num_classes)`` of ``model`` (in eval mode) on ``dataset``;
    an image's probabilities do not depend on the batch it is in."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([F.softmax(model(x), dim=1) for x, _ in dataset.batches(batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, dataset: ImageTensorDataset, batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset``."""
    probabilities = predict(model, dataset, batch_size)
    loss = F.nll_loss(probabilities.clamp_min(1e-12).log(), dataset.labels).item()
    accuracy = (probabilities.argmax(1) == dataset.labels).float().mean().item()
    return loss, accuracy


def confusion_matrix(model: nn.Module, dataset: ImageTensorDataset) -> torch.Tensor:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    predicted = predict(model, dataset).argmax(1)
    k = dataset.num_classes
    return torch.bincount(dataset.labels * k + predicted, minlength=k * k).view(k, k)


def _distributed() -> tuple[int, int]:
    """(rank, world size), initializing the gloo process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def _learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    warmup = config.warmup_epochs * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1.0, total - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    config: TrainConfig,
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset,
    model_config: ZFNetConfig | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[ZFNet, list[dict[str, Any]]]:
    """Train a :class:`ZFNet` on ``train_set``; return the model (eval mode) and its history.

    ``history`` has one dict per epoch: epoch, lr, train_loss, train_acc, val_loss, val_acc,
    seconds, largest_filter_rms (the largest conv filter RMS after any step of the epoch, before
    the clipping of ``max_filter_rms``: at most the cap means the clipping never acted).
    ``on_epoch`` is called with each (e.g. to draw live curves in a notebook).
    Under ``torchrun`` every process trains on its share of each batch (DDP, gloo); only
    rank 0 writes checkpoints and shows progress.
    """
    if train_set.class_names != val_set.class_names:
        raise ValueError(
            f"the training and validation sets have different classes: train {list(train_set.class_names)}, "
            f"val {list(val_set.class_names)}; give both splits the same class folders"
        )
    rank, world = _distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {world} processes")
    model_config = dataclasses.replace(
        model_config or ZFNetConfig(),
        num_classes=train_set.num_classes,
        image_size=train_set.images.shape[-1],
    )
    torch.manual_seed(config.seed)
    # Channels-last tensors train about a quarter faster on CPUs (oneDNN's native layout); the
    # returned model is converted back, so hooks and the deconvnet see the usual layout.
    model = ZFNet(model_config).to(memory_format=torch.channels_last)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(train_set)} images, fewer than one batch of {config.batch_size}")
    local_batch = config.batch_size // world
    out_dir = Path(config.out_dir) if config.out_dir else None
    metadata = {
        "class_names": train_set.class_names,
        "mean": train_set.mean,
        "std": train_set.std,
        "train_config": dataclasses.asdict(config),
    }
    history: list[dict[str, Any]] = []

    def save_snapshot(epoch: float) -> None:
        if out_dir is not None and rank == 0:
            save_checkpoint(
                out_dir / snapshot_name(epoch),
                model,
                epoch=epoch,
                history=history,
                half=config.snapshot_half,
                **metadata,
            )

    within_epoch = {  # step -> fractional snapshot taken after it
        max(1, round(epoch * steps_per_epoch)): epoch
        for epoch in config.snapshot_epochs
        if not float(epoch).is_integer()
    }
    step = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(train_set), generator=generator)
        total_loss = total_correct = seen = 0.0
        largest_rms = 0.0
        bar = progress_bar(
            range(steps_per_epoch),
            desc=f"epoch {epoch}/{config.epochs}",
            leave=False,
            progress=progress and rank == 0,
        )
        for batch_index in bar:
            indices = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
            augmented = augment_batch(train_set.images[indices], config.augment, generator)
            local = slice(rank * local_batch, (rank + 1) * local_batch)
            images = train_set.normalize(augmented[local]).contiguous(memory_format=torch.channels_last)
            labels = train_set.labels[indices][local]
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, step, steps_per_epoch)
            logits = net(images)
            loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at epoch {epoch}, step {batch_index + 1}: the run "
                    f"diverged, and no checkpoint of it is written. Lower the learning rate (lr={config.lr}), "
                    "or check the images for NaN values."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            largest_rms = max(largest_rms, largest_filter_rms(model))
            if config.max_filter_rms is not None:
                renormalize_filters(model, config.max_filter_rms)
            step += 1
            if step in within_epoch:
                save_snapshot(within_epoch[step])
            total_loss += loss.item() * len(labels)
            total_correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        val_loss = val_acc = None
        if config.validate_every_epoch or epoch == config.epochs:
            val_loss, val_acc = evaluate(model, val_set)
        record = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": total_loss / seen,
            "train_acc": total_correct / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": time.perf_counter() - start,
            "largest_filter_rms": largest_rms,
        }
        history.append(record)
        if progress and rank == 0:
            validation = f"  val loss {val_loss:.3f} acc {val_acc:.3f}" if val_acc is not None else ""
            tqdm.write(
                f"epoch {epoch:3d}  train loss {record['train_loss']:.3f} acc {record['train_acc']:.3f}"
                f"{validation}  ({record['seconds']:.1f}s)"
            )
        if on_epoch is not None:
            on_epoch(record)
        if epoch in set(config.snapshot_epochs):
            save_snapshot(epoch)
    model.to(memory_format=torch.contiguous_format).eval()
    if out_dir is not None and rank == 0:
        save_checkpoint(out_dir / "final.pt", model, epoch=config.epochs, history=history, **metadata)
        with atomic_write(out_dir / "history.json", "w") as stream:
            json.dump(history, stream, indent=2)
    return model, history


#: Where the command line saves a run when no ``--out`` is given.
DEFAULT_OUT = "build/train"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.train",
        description=__doc__,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
    )
    defaults = TrainConfig()
    add = parser.add_argument
    add(
        "--dataset",
        default="embedded",
        help="'embedded', 'samples', 'cifar10', 'imagenette' or the path of an "
        "ImageFolder, e.g. $COURSE_PHOTOS (default: embedded)",
    )
    add("--train-split", default="train", help="split to train on (default: train)")
    add(
        "--val-split",
        default="val",
        help="split to validate on (default: val); a folder without splits gets a 10%% hold-out",
    )
    add("--max-train", type=int, default=None, help="use only the first N training images (default: all)")
    add(
        "--image-size",
        type=int,
        default=None,
        help="side in pixels that photos are resized to or embedded images drawn at (default: the loader's: 128 for embedded, 64 for a photo folder)",
    )
    add(
        "--epochs", type=int, default=defaults.epochs, help=f"passes over the training set (default: {defaults.epochs})"
    )
    add("--batch-size", type=int, default=defaults.batch_size, help=f"images per step (default: {defaults.batch_size})")
    add("--lr", type=float, default=defaults.lr, help=f"peak learning rate (default: {defaults.lr})")
    add(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help=f"L2 weight decay (default: {defaults.weight_decay})",
    )
    add(
        "--augment",
        default=defaults.augment,
        choices=("none", "flip", "crop_flip"),
        help=f"data augmentation (default: {defaults.augment})",
    )
    add(
        "--seed",
        type=int,
        default=defaults.seed,
        help=f"seeds initialization, order and augmentation (default: {defaults.seed})",
    )
    add("--snapshots", default="", help="comma-separated epochs to checkpoint as well, e.g. 0.25,1,2,5 (default: none)")
    add(
        "--out", default=DEFAULT_OUT, help=f"folder for final.pt, epoch_XX.pt and history.json (default: {DEFAULT_OUT})"
    )
    add("--conv-widths", default=None, help="five comma-separated widths for conv1..conv5 (default: the ZFNet's)")
    add("--fc-widths", default=None, help="two comma-separated widths for fc6, fc7 (default: the ZFNet's)")
    add("--remove", default="", help="comma-separated layers to leave out, e.g. conv3,conv4 (default: none)")
    add("--conv1", default=None, help="first layer kernel/stride, e.g. 7/2 (ZF, the default) or 11/4 (AlexNet)")
    add("--lcn", action="store_true", help="add local contrast normalization after pool1/pool2 (default: off)")
    add(
        "--dropout",
        type=float,
        default=ZFNetConfig.dropout,
        help=f"dropout after fc6/fc7 (default: {ZFNetConfig.dropout})",
    )
    add_threads_option(parser, per_process=True)
    return parser


def _ints(text: str | None, option: str, count: int | None = None) -> tuple[int, ...]:
    """Comma-separated integers of a command-line option (``count`` of them when given)."""
    parts = [part.strip() for part in text.split(",") if part.strip()] if text else []
    if not all(part.lstrip("-").isdigit() for part in parts):
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}")
    values = tuple(int(part) for part in parts)
    if count is not None and len(values) != count:
        raise ValueError(f"{option} needs {count} integers, got {len(values)} ({text!r})")
    return values


def _epochs(text: str | None) -> tuple[float, ...]:
    """The comma-separated epochs of ``--snapshots``: whole numbers as int, fractions as float."""
    values = []
    for part in (part.strip() for part in (text or "").split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--snapshots must be comma-separated epochs such as 0.25,1,2, got {text!r}") from None
        values.append(int(value) if value.is_integer() else value)
    return tuple(values)


def _configs(args: argparse.Namespace) -> tuple[ZFNetConfig, TrainConfig]:
    """The model and training configs of the command line, every argument checked (``ValueError``)."""
    if args.max_train is not None and args.max_train < 1:
        raise ValueError(f"--max-train must be a positive number of images, got {args.max_train}")
    if args.image_size is not None and args.image_size < 16:
        raise ValueError(f"--image-size must be at least 16 pixels, got {args.image_size}")
    if args.image_size is not None and args.dataset in ("cifar10", "samples"):
        raise ValueError(f"--image-size does not apply to {args.dataset}; use it with embedded or a photo folder")
    if not (math.isfinite(args.dropout) and 0 <= args.dropout < 1):
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    overrides: dict[str, Any] = {
        "lcn": args.lcn,
        "dropout": args.dropout,
        "remove": tuple(r for r in args.remove.split(",") if r),
    }
    if args.conv_widths:
        overrides["conv_widths"] = _ints(args.conv_widths, "--conv-widths", 5)
    if args.fc_widths:
        overrides["fc_widths"] = _ints(args.fc_widths, "--fc-widths", 2)
    if args.conv1:
        kernel, stride = _ints(args.conv1.replace("/", ","), "--conv1 (kernel/stride)", 2)
        overrides.update(conv1_kernel=kernel, conv1_stride=stride)
    model_config = ZFNetConfig(**overrides)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment=args.augment,
        seed=args.seed,
        snapshot_epochs=_epochs(args.snapshots),
        out_dir=args.out,
    )
    return model_config, config


def _datasets(args: argparse.Namespace, progress: bool) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """The training and validation sets; a photo folder without split folders gets a seeded
    10% hold-out per class for validation (said on stdout), never its own training images."""
    folder = Path(args.dataset).expanduser()
    size = {} if args.image_size is None else {"image_size": args.image_size}
    if folder.is_dir() and not any((folder / split).is_dir() for split in ("train", "val", "test")):
        dataset = load_image_folder(folder, progress=progress, **size)
        train_set, val_set = hold_out(dataset, 0.1, args.seed)
        if progress:
            print(
                f"{folder} has no train/ and val/ folders: holding out {len(val_set)} of its {len(dataset)} images "
                f"(10% per class, seed {args.seed}) for validation"
            )
    else:
        train_set = load_dataset(args.dataset, args.train_split, progress=progress, **size)
        val_set = load_dataset(args.dataset, args.val_split, progress=progress, **size)
    if args.max_train:
        train_set = train_set.subset(range(min(args.max_train, len(train_set))))
    return train_set, val_set


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Entry point of ``python -m course_utils.train``; returns the history.

    Every argument is checked before any data loads (a bad one exits with status 2 and says
    why); a diverging run stops with status 1 and writes no checkpoint of its NaN weights.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        model_config, config = _configs(args)
    except (ValueError, TypeError) as error:
        parser.error(str(error))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    set_torch_threads(args.threads, processes=world)
    progress = int(os.environ.get("RANK", "0")) == 0
    try:
        train_set, val_set = _datasets(args, progress)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    start = time.perf_counter()
    try:
        _, history = train(config, train_set, val_set, model_config, progress=progress)
    except (TrainingDiverged, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    if progress:
        print(
            f"trained {args.epochs} epochs in {time.perf_counter() - start:.1f}s on {world} process(es); "
            f"final val accuracy {history[-1]['val_acc']:.4f}"
        )
        saved = ["final.pt", *(snapshot_name(epoch) for epoch in config.snapshot_epochs), "history.json"]
        print(f"saved to {Path(args.out).resolve()}: {', '.join(saved)}")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return history


if __name__ == "__main__":
    main()
