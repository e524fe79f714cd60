"""Datasets of the course, all returned as :class:`ImageTensorDataset`.

``load_dataset("embedded", "train")`` gives the procedurally generated shapes (the default,
no download); ``"cifar10"`` and ``"imagenette"`` go through torchvision and the download
registry; any other string is treated as the path of an ImageFolder.
"""

from __future__ import annotations

from pathlib import Path

from .core import DATA_DIR, CacheError, ImageTensorDataset, load_array_cache, save_array_cache
from .embedded import EMBEDDED_CLASSES, HELDOUT_CLASSES, SYMMETRIC_CLASSES, generate_shapes, load_embedded
from .real import REGISTRY, DownloadError, download, load_cifar10, load_image_folder, load_imagenette

__all__ = [
    "DATA_DIR",
    "CacheError",
    "ImageTensorDataset",
    "load_array_cache",
    "save_array_cache",
    "EMBEDDED_CLASSES",
    "HELDOUT_CLASSES",
    "generate_shapes",
    "load_embedded",
    "REGISTRY",
    "DownloadError",
    "download",
    "load_cifar10",
    "load_image_folder",
    "load_imagenette",
    "DATASET_NAMES",
    "load_dataset",
    "FAMILIES",
    "class_family",
]

DATASET_NAMES = ("embedded", "cifar10", "imagenette")
#: The embedded dataset's families of classes (:func:`class_family`), in the order of its classes.
FAMILIES = ("face", "vehicle", "house", "plant", "symmetric")
_VEHICLES = ("car", "truck", "bus")


def class_family(class_name: str) -> str:
    """The family of an embedded class (main or held-out), one of :data:`FAMILIES`.

    Faces, vehicles and houses are named ``family:parts`` (``face:round-eyes/none-ears/button``,
    ``truck:two-wheels/round-windows``, ``house:flat-roof/square-windows``); the rotation-symmetric
    shapes are :data:`~course_utils.data.embedded.SYMMETRIC_CLASSES`; every other name
    (``daisy``, ``conifer``, ``mushroom`` ...) is a plant.
    """
    if not isinstance(class_name, str) or not class_name:
        raise ValueError(f"class_name must be a non-empty string, got {class_name!r}")
    if class_name in SYMMETRIC_CLASSES:
        return "symmetric"
    if ":" not in class_name:
        return "plant"
    prefix = class_name.split(":", 1)[0]
    if prefix in _VEHICLES:
        return "vehicle"
    if prefix in ("face", "house"):
        return prefix
    raise ValueError(f"unknown family {prefix!r} of class {class_name!r}; the embedded families are {FAMILIES}")


def load_dataset(name: str, split: str = "train", **options) -> ImageTensorDataset:
    """Load a dataset by name (``embedded``, ``cifar10``, ``imagenette``) or ImageFolder path.

    ``options`` are passed to the matching loader (e.g. ``root=``, ``download=``, ``image_size=``).
    """
    if name == "embedded":
        return load_embedded(split, **options)
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
