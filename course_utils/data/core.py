"""The one dataset interface of the course, and hashed atomic caches.

Every loader (embedded shapes, CIFAR-10, ImageFolder) returns an :class:`ImageTensorDataset`:
all images decoded once into a ``uint8`` tensor, with the class names and the per-channel
normalization that the model expects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "hold_out",
    "cache_dir",
    "ImageTensorDataset",
    "atomic_write",
    "CacheError",
    "save_array_cache",
    "load_array_cache",
    "DATA_DIR",
]

#: The project's data folder (small committed assets; generated caches are git-ignored).
DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class ImageTensorDataset(Dataset):
    """Images held in memory as ``uint8`` with labels, class names and normalization.

    Attributes:
        images: ``(N, 3, H, W)`` uint8 RGB.
        labels: ``(N,)`` int64 class indices.
        class_names: readable names, ``class_names[label]``.
        mean, std: per-channel statistics in [0, 1] units used by :meth:`normalize`.
        extras: per-image annotations, each a tensor with first dimension ``N``
            (the embedded dataset stores ``parts`` and ``masks`` here).

    ``dataset[i]`` returns ``(image, label)`` with ``image`` a normalized ``(3, H, W)`` float32.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        extras: dict[str, torch.Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be a uint8 tensor of shape (N, 3, H, W), got {images.dtype} "
                f"{tuple(images.shape)}; convert grayscale to RGB and scale to 0..255 first"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.class_names = list(class_names)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.extras = dict(extras or {})
        for name, value in self.extras.items():
            if value.shape[0] != images.shape[0]:
                raise ValueError(f"extra {name!r} has {value.shape[0]} rows for {images.shape[0]} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[index]), int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (3, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=like.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=like.device).view(shape)
        return mean, std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, H, W)`` -> normalized float32 of the same shape."""
        mean, std = self._stats(images)
        return (images.float() / 255.0 - mean) / std

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized float ``(..., 3, H, W)`` -> float in [0, 1] for display."""
        mean, std = self._stats(images)
        return (images * std + mean).clamp(0.0, 1.0)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageTensorDataset:
        """A new dataset with the rows ``indices`` (extras included)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensorDataset(
            self.images[indices],
            self.labels[indices],
            self.class_names,
            self.mean,
            self.std,
            {name: value[indices] for name, value in self.extras.items()},
        )

    def batches(self, batch_size: int = 256):
        """Yield ``(normalized images, labels)`` in order, ``(B, 3, H, W)`` and ``(B,)``."""
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.normalize(self.images[start:stop]), self.labels[start:stop]


def _remove_orphans(path: Path) -> None:
    """Delete temporary files of earlier writes to ``path`` whose writer process is gone (a
    killed writer leaves one behind); those of live writers are left alone."""
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = orphan.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)  # signal 0: does the process exist?
        except ProcessLookupError:
            orphan.unlink(missing_ok=True)
        except PermissionError:
            continue  # it exists, as another user


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder for decoded and generated data: ``root``, else ``$COURSE_CACHE_DIR``, else
    ``DATA_DIR / "cache"`` (every loader and the training command line use this)."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("COURSE_CACHE_DIR") or DATA_DIR / "cache").expanduser()


def hold_out(
    dataset: ImageTensorDataset, fraction: float = 0.1, seed: int = 0
) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """``(rest, held out)``: a seeded ``fraction`` of each class's images (at least one) set apart
    for validation, so that a folder without a validation split is never validated on its
    training images. Rows keep their order within each part."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in range(dataset.num_classes):
        members = (dataset.labels == label).nonzero().flatten()
        if len(members) < 2:
            raise ValueError(
                f"class {dataset.class_names[label]!r} has {len(members)} image(s); a hold-out needs at least 2 per class"
            )
        count = max(1, round(fraction * len(members)))
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    mask = torch.zeros(len(dataset), dtype=torch.bool)
    mask[torch.cat(held)] = True
    return dataset.subset(torch.nonzero(~mask).flatten()), dataset.subset(torch.nonzero(mask).flatten())


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing (``mode`` "wb" or "w"); when the block
    ends without error, flush it to disk, make it readable by all (0644) and rename it over
    ``path``. On any error the temporary file is deleted and ``path`` is left as it was.

    ``with atomic_write(path) as stream: torch.save(payload, stream)``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a cache, checkpoint or result is shareable
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class CacheError(RuntimeError):
    """A cache file is missing, partial or does not match its recorded hash."""


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm`` as :func:`hashlib.new` names it), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_array_cache(path: str | os.PathLike, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Path | None:
    """Write ``arrays`` to ``path`` (.npz) atomically, with a ``.json`` sidecar holding its sha256.

    The sidecar is written last, so a crash leaves either no cache or one whose hash check
    fails; :func:`load_array_cache` then reports it and the caller rebuilds. A folder that
    cannot be written (read-only) gives a warning and ``None``: the caller serves the data from
    memory.
    """
    path = Path(path)
    try:
        with atomic_write(path) as stream:
            np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
        with atomic_write(path.with_suffix(".json"), "w") as stream:
            stream.write(json.dumps({"sha256": file_hash(path), **info}, indent=2, sort_keys=True))
    except OSError as error:  # PermissionError, read-only file system, full disk
        warnings.warn(
            f"cannot write the cache {path} ({error}); the data is served from memory and built again next "
            "time. Set COURSE_CACHE_DIR to a writable folder to keep it.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return path


def load_array_cache(path: str | os.PathLike, info: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read a cache written by :func:`save_array_cache`, checking its hash and ``info``.

    Raises :class:`CacheError` when the file or its sidecar is missing, the sha256 differs
    (corrupt or partial file) or the recorded ``info`` differs from the expected one.
    """
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not path.exists() or not sidecar.exists():
        raise CacheError(f"no complete cache at {path}")
    try:
        recorded = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheError(f"cache sidecar {sidecar} is corrupt: {error}") from error
    if not isinstance(recorded, dict):
        raise CacheError(f"cache sidecar {sidecar} is corrupt: it holds a {type(recorded).__name__}, not a mapping")
    expected_info = json.loads(json.dumps(info, sort_keys=True))
    if {k: v for k, v in recorded.items() if k != "sha256"} != expected_info:
        raise CacheError(f"cache {path} was made with other settings")
    if file_hash(path) != recorded.get("sha256"):
        raise CacheError(f"cache {path} is corrupt or partial (sha256 mismatch)")
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}
