"""Datasets of the course, all returned as :class:`ImageTensorDataset`.

``load_dataset("embedded", "train")`` gives the procedurally generated shapes (the default,
no download); ``"samples"`` the real sample photos that every user has offline (224 px, for
ImageNet models); ``"cifar10"`` and ``"imagenette"`` go through torchvision and the download
registry; any other string is treated as the path of an ImageFolder (the user's photo folder:
:func:`photo_folder`, chosen with ``COURSE_PHOTOS``).
"""

from __future__ import annotations

from pathlib import Path

from .core import DATA_DIR, CacheError, ImageTensorDataset, load_array_cache, save_array_cache
from .embedded import EMBEDDED_CLASSES, FAMILIES, HELDOUT_CLASSES, class_family, generate_shapes, load_embedded
from .real import (
    PHOTOS_VARIABLE,
    REGISTRY,
    SAMPLES,
    DownloadError,
    download,
    load_cifar10,
    load_image_folder,
    load_imagenette,
    load_samples,
    photo_folder,
)

__all__ = [
    "CacheError",
    "class_family",
    "DATA_DIR",
    "DATASET_NAMES",
    "download",
    "DownloadError",
    "EMBEDDED_CLASSES",
    "FAMILIES",
    "generate_shapes",
    "HELDOUT_CLASSES",
    "ImageTensorDataset",
    "load_array_cache",
    "load_cifar10",
    "load_dataset",
    "load_embedded",
    "load_image_folder",
    "load_imagenette",
    "load_samples",
    "photo_folder",
    "PHOTOS_VARIABLE",
    "REGISTRY",
    "SAMPLES",
    "save_array_cache",
]

DATASET_NAMES = ("embedded", "samples", "cifar10", "imagenette")


def load_dataset(name: str, split: str = "train", **options) -> ImageTensorDataset:
    """Load a dataset by name (``embedded``, ``samples``, ``cifar10``, ``imagenette``) or ImageFolder path.

    ``options`` are passed to the matching loader (e.g. ``root=``, ``download=``, ``image_size=``).
    """
    if name == "embedded":
        return load_embedded(split, **options)
    if name == "samples":
        if split not in ("train", "all"):
            raise ValueError(f"the sample photos have one split, 'all'; got {split!r}")
        return load_samples(**options)
    if name == "cifar10":
        return load_cifar10(split, **options)
    if name == "imagenette":
        return load_imagenette(split, **options)
    if Path(name).expanduser().is_dir():
        return load_image_folder(name, split, **options)
    raise ValueError(
        f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)} or the path of an "
        "existing ImageFolder directory (root/<class>/*.png or root/<split>/<class>/*.jpg)"
    )
