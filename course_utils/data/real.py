"""Real datasets: a download registry, CIFAR-10, ImageFolder photos and Imagenette.

Downloads go through one registry (:data:`REGISTRY`) of URL + hash. Archives are cached in
``root``, else in ``$COURSE_DATA_DIR``, else in ``DATA_DIR / "downloads"`` (git-ignored), and
extracted next to the archive. Offline, :func:`download` raises a :class:`DownloadError` that
says which URL to fetch by hand, its expected hash and the exact path to put it at.

Photos (:func:`load_image_folder`) are decoded once into a ``uint8`` tensor and cached under
``DATA_DIR / "cache"`` with :func:`save_array_cache`, keyed by the folder, the size and
modification time of every image, and the image size, so a second load skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.datasets import CIFAR10, ImageFolder

from ..progress import progress_bar
from .core import DATA_DIR, CacheError, ImageTensorDataset, atomic_write, file_hash, load_array_cache, save_array_cache
from .core import cache_dir as default_cache_dir

__all__ = [
    "RegistryEntry",
    "REGISTRY",
    "DownloadError",
    "download",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGENETTE_CLASSES",
    "load_cifar10",
    "load_image_folder",
    "load_imagenette",
    "load_samples",
    "photo_folder",
    "PHOTOS_VARIABLE",
    "SAMPLES",
]

_HASH_LENGTHS = {"md5": 32, "sha256": 64}


@dataclass(frozen=True)
class RegistryEntry:
    """One downloadable archive.

    Attributes:
        url: where to download it from.
        filename: the archive's name in the download folder.
        hash: ``"md5:<hex>"`` or ``"sha256:<hex>"`` of the archive.
        description: one line saying what it is.
        folder: the top-level folder the archive extracts to.
    """

    url: str
    filename: str
    hash: str
    description: str
    folder: str

    def __post_init__(self) -> None:
        algorithm, _, digest = self.hash.partition(":")
        if _HASH_LENGTHS.get(algorithm) != len(digest) or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(
                f"hash must be 'md5:<32 hex digits>' or 'sha256:<64 hex digits>' (lowercase), got {self.hash!r}"
            )


#: Every archive the course downloads, by name, from ``registry.json`` beside this module (one
#: table of URL, file name, hash, description and folder; hashes as in torchvision's CIFAR10
#: and fast.ai's Imagenette).
REGISTRY: dict[str, RegistryEntry] = {
    name: RegistryEntry(**fields)
    for name, fields in json.loads((Path(__file__).with_name("registry.json")).read_text()).items()
}

#: Per-channel statistics of the 50,000 CIFAR-10 training images, in [0, 1] units.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: The ImageNet statistics torchvision's pretrained models expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Readable names of Imagenette's WordNet ids.
IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}

_SPLIT_FOLDERS = ("train", "val", "test")
# tarfile's "data" filter (no absolute paths, no links out) exists from Python 3.10.12 / 3.11.4;
# older ones extract as is, which the archive's verified hash makes safe for registry archives.
_SAFE_TAR = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_CACHE_FORMAT = 1


class DownloadError(RuntimeError):
    """A registry download failed (no network, bad hash, bad archive); the message says what to do."""


def _download_root(root: str | os.PathLike | None) -> Path:
    """``root``, else ``$COURSE_DATA_DIR``, else ``DATA_DIR / "downloads"``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"]).expanduser()
    return DATA_DIR / "downloads"


def _registry_entry(name: str) -> RegistryEntry:
    if name not in REGISTRY:
        raise ValueError(f"unknown download {name!r}; the registry has: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def _check_hash(path: Path, entry: RegistryEntry, origin: str) -> None:
    """Delete ``path`` and raise :class:`DownloadError` when its hash is not ``entry.hash``."""
    algorithm, _, expected = entry.hash.partition(":")
    actual = file_hash(path, algorithm)
    if actual != expected:
        path.unlink()
        raise DownloadError(
            f"hash mismatch for {origin}: {algorithm} is {actual}, expected {expected}; the bad file was "
            f"deleted. Run again to download {entry.url} anew, or put a good copy by hand at "
            f"{path.parent / entry.filename}"
        )


def _fetch(entry: RegistryEntry, archive: Path, progress: bool) -> None:
    """Download ``entry.url`` to ``archive`` atomically, verifying its hash while it streams in:
    a failed or corrupt download leaves nothing behind."""
    algorithm, _, expected = entry.hash.partition(":")
    digest = hashlib.new(algorithm)
    with atomic_write(archive) as stream:
        try:
            with urllib.request.urlopen(entry.url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(
                    total=total, unit="B", unit_scale=True, desc=entry.filename, progress=progress
                ) as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        stream.write(block)
                        digest.update(block)
                        bar.update(len(block))
        except OSError as error:  # URLError, HTTPError and timeouts are OSErrors
            raise DownloadError(
                f"could not download {entry.description}\n  from {entry.url}\n  ({error}).\n"
                f"Without network access, download that URL elsewhere and put the file by hand at\n"
                f"  {archive}\n(expected {algorithm} {expected}); the next call verifies and extracts it."
            ) from error
        if digest.hexdigest() != expected:
            raise DownloadError(
                f"hash mismatch for the download of {entry.url}: {algorithm} is {digest.hexdigest()}, expected "
                f"{expected}; nothing was kept. Run again to download it anew, or put a good copy by hand at "
                f"{archive}"
            )


def _extract(archive: Path, entry: RegistryEntry) -> Path:
    """Extract the tar ``archive`` into a temporary folder, then move ``entry.folder`` into place."""
    target = archive.parent / entry.folder
    staging = Path(tempfile.mkdtemp(dir=archive.parent, prefix=f".{entry.folder}.", suffix=".extracting"))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, **_SAFE_TAR)  # type: ignore[arg-type]  # filter="data" where supported
        except (tarfile.TarError, EOFError) as error:
            raise DownloadError(
                f"{archive} is not a readable tar archive ({error}); delete it and run again"
            ) from error
        if not (staging / entry.folder).is_dir():
            found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
            raise DownloadError(f"{archive} should contain the folder {entry.folder!r}, it contains {found}")
        try:
            os.rename(staging / entry.folder, target)
        except OSError:
            if not target.is_dir():  # otherwise another process extracted it first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Fetch, verify and extract the registry archive ``name``; return the extracted folder.

    The archive is cached as ``root / entry.filename`` (``root`` defaults to ``$COURSE_DATA_DIR``,
    else ``DATA_DIR / "downloads"``) and extracts to ``root / entry.folder``. An extracted folder
    is complete (extraction goes to a temporary folder that is renamed), so when it exists
    nothing is done. A cached archive is used only when its hash verifies; a download goes to a
    temporary file that is renamed once its hash verifies. Nothing half-written is left behind.

    Raises:
        ValueError: ``name`` is not in :data:`REGISTRY`.
        DownloadError: no network (the message gives the URL, the expected hash and the path to
            put the file at by hand), or a hash mismatch (the bad file is deleted).
    """
    entry = _registry_entry(name)
    root = _download_root(root)
    target = root / entry.folder
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / entry.filename
    if archive.is_file():
        _check_hash(archive, entry, f"the cached file {archive}")
    else:
        _fetch(entry, archive, progress)
    return _extract(archive, entry)


_download_archive = download  # the loaders' ``download`` flag shadows the function's name


def _missing_data_error(what: str, entry: RegistryEntry, root: Path, call: str, missing: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found: {missing}. Call {call} with download=True to fetch it, or, offline, put "
        f"{entry.url} ({entry.hash}) at {root / entry.filename} and then call it with download=True "
        "(that verifies and extracts the file without network)."
    )


class _CIFAR10Batches(CIFAR10):
    """torchvision's CIFAR-10 pickle reader without per-batch md5 checks.

    :func:`download` verifies the archive's md5, and files by hand are read as they are, so
    batches in the same format but other content (e.g. test fixtures) load too.
    """

    train_list = [[filename, None] for filename, _ in CIFAR10.train_list]
    test_list = [[filename, None] for filename, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def load_cifar10(
    split: str = "train", root: str | os.PathLike | None = None, download: bool = False
) -> ImageTensorDataset:
    """CIFAR-10 from its python pickle batches, as ``(N, 3, 32, 32)`` uint8 images.

    Args:
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch,
            10,000 images); ``"val"`` is the test set.
        root: the folder holding ``cifar-10-batches-py`` (default as in :func:`download`).
        download: fetch and extract the archive through :data:`REGISTRY` when missing.

    Class names come from ``batches.meta``; normalization is CIFAR-10's training-set mean/std.
    """
    if split not in ("train", "test", "val"):
        raise ValueError(f"split must be 'train', 'test' or 'val' (= 'test'), got {split!r}")
    entry = REGISTRY["cifar10"]
    root = _download_root(root)
    if download:
        _download_archive("cifar10", root)
    folder = root / entry.folder
    needed = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise _missing_data_error("CIFAR-10", entry, root, "load_cifar10", f"{folder} lacks {', '.join(missing)}")
    batches = _CIFAR10Batches(str(root), train=split == "train")
    images = torch.from_numpy(batches.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(batches.targets, dtype=torch.long)
    return ImageTensorDataset(images, labels, batches.classes, CIFAR10_MEAN, CIFAR10_STD)


def _open_rgb(path: str, image_size: int) -> Image.Image:
    """Open an image as RGB (grayscale replicated, alpha dropped); JPEGs decode at a reduced
    scale whose shorter side is still at least ``image_size`` (PIL's draft mode)."""
    with Image.open(path) as image:
        image.draft("RGB", (image_size, image_size))
        return image.convert("RGB")


def _to_square_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """Resize the shorter side to ``image_size``, centre-crop; ``(3, image_size, image_size)`` uint8."""
    return TF.pil_to_tensor(TF.center_crop(TF.resize(image, image_size), image_size))


def _channel_stats(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std in [0, 1] units of ``(N, 3, H, W)`` uint8 images."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(3):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        variance = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return np.array(means), np.array(stds)


def _decode_images(folder: ImageFolder, image_size: int, progress: bool, description: str) -> torch.Tensor:
    """Decode every image of ``folder`` into one ``(N, 3, image_size, image_size)`` uint8 tensor."""
    images = torch.empty((len(folder), 3, image_size, image_size), dtype=torch.uint8)
    for index in progress_bar(range(len(folder)), desc=description, unit="img", progress=progress):
        try:
            images[index] = folder[index][0]
        except (OSError, ValueError, SyntaxError) as error:  # PIL: truncated, unreadable or not an image
            raise ValueError(
                f"cannot read the image {folder.samples[index][0]} ({type(error).__name__}: {error}); "
                "delete or replace that file"
            ) from error
    return images


def _decoded_folder(image_root: Path, image_size: int, cache_dir: Path, progress: bool) -> dict[str, np.ndarray]:
    """Images, labels, class folder names and channel stats of one ImageFolder, through the cache.

    Returns arrays ``images`` ``(N, 3, S, S)`` uint8, ``labels`` ``(N,)`` int64, ``classes``
    ``(C,)`` str, ``mean`` and ``std`` ``(3,)`` float64.
    """
    try:
        folder = ImageFolder(
            str(image_root),
            loader=partial(_open_rgb, image_size=image_size),
            transform=partial(_to_square_tensor, image_size=image_size),
        )
    except FileNotFoundError as error:
        raise ValueError(
            f"{image_root} is not an image folder ({error}); expected <folder>/<class name>/<image file>, "
            "every class folder holding at least one image (.jpg, .jpeg, .png, ...)"
        ) from error
    listing = hashlib.sha256()
    for path, label in folder.samples:
        status = os.stat(path)
        relative = os.path.relpath(path, image_root)
        listing.update(f"{relative}\t{label}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    info = {
        "format": _CACHE_FORMAT,
        "folder": str(image_root),
        "image_size": image_size,
        "images": len(folder),
        "files_sha256": listing.hexdigest(),
    }
    cache_key = hashlib.sha256(str(image_root).encode()).hexdigest()[:16]
    cache_path = cache_dir / f"image-folder-{image_root.name}-{cache_key}-{image_size}px.npz"
    try:
        return load_array_cache(cache_path, info)
    except CacheError:
        pass
    images = _decode_images(folder, image_size, progress, f"decoding {image_root.name}")
    mean, std = _channel_stats(images)
    arrays = {
        "images": images.numpy(),
        "labels": np.array(folder.targets, dtype=np.int64),
        "classes": np.array(folder.classes),
        "mean": mean,
        "std": std,
    }
    save_array_cache(cache_path, arrays, info)
    return arrays


def _read_class_names(folders: Sequence[Path]) -> dict[str, str]:
    """The ``folder name -> readable name`` map of the first ``classes.tsv`` among ``folders``."""
    for folder in folders:
        table = folder / "classes.tsv"
        if table.is_file():
            names = {}
            for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                fields = line.split("\t")
                if len(fields) != 2:
                    raise ValueError(
                        f"{table} line {number}: expected '<folder name><TAB><readable name>', got {line!r}"
                    )
                names[fields[0].strip()] = fields[1].strip()
            return names
    return {}


def load_image_folder(
    root: str | os.PathLike,
    split: str | None = None,
    image_size: int = 64,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ImageTensorDataset:
    """Photos of an ImageFolder (``<folder>/<class>/<image>``) as ``(N, 3, S, S)`` uint8, S = image_size.

    Args:
        root: the dataset folder; ``root/<split>`` is used when it exists (train/val layout),
            else ``root`` itself holds the class folders.
        split: e.g. ``"train"`` or ``"val"``; required when ``root`` has split folders.
        image_size: each image's shorter side is resized to it, then centre-cropped square.
        mean, std: per-channel normalization in [0, 1] units. When not given they are computed
            from the ``train`` split of ``root`` if it has one, else from the loaded images.
        progress: show a progress bar while decoding.
        cache_dir: where the decoded tensor is cached (default ``$COURSE_CACHE_DIR`` or
            ``DATA_DIR / "cache"``); the cache
            is rebuilt when any image file's size or modification time, or ``image_size``, changes.

    Images are converted to RGB (grayscale replicated, alpha dropped). Class names are the class
    folder names, or their readable names from a ``classes.tsv`` (``<folder name><TAB><name>``
    lines) in the split folder or in ``root``.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (3 values each in [0, 1] units), or neither to compute them")
    if mean is not None and std is not None and (len(mean) != 3 or len(std) != 3 or min(std) <= 0):
        raise ValueError(f"mean and std must have 3 values each, std > 0; got mean={mean!r}, std={std!r}")
    splits = [name for name in _SPLIT_FOLDERS if (root / name).is_dir()]
    if split is not None and (root / split).is_dir():
        image_root = root / split
    elif splits:
        raise ValueError(f"{root} has the split folders {', '.join(splits)}; pass split= one of them, got {split!r}")
    else:
        image_root = root
    cache_folder = default_cache_dir(cache_dir)
    arrays = _decoded_folder(image_root, image_size, cache_folder, progress)
    if mean is None:
        uses_train_stats = image_root != root and split != "train" and "train" in splits
        stats = _decoded_folder(root / "train", image_size, cache_folder, progress) if uses_train_stats else arrays
        mean, std = stats["mean"].tolist(), stats["std"].tolist()
    assert mean is not None and std is not None
    readable = _read_class_names([image_root, root])
    class_names = [readable.get(name, name) for name in arrays["classes"].tolist()]
    return ImageTensorDataset(
        torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]), class_names, mean, std
    )


def load_imagenette(
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int = 64,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ImageTensorDataset:
    """Imagenette 160px (``split`` ``"train"`` or ``"val"``) as ``(N, 3, S, S)`` uint8 photos.

    Fetched and extracted through :data:`REGISTRY` when ``download`` is true, then read with
    :func:`load_image_folder`; class names are readable (:data:`IMAGENETTE_CLASSES`) and the
    normalization is ImageNet's, as Imagenette is an ImageNet subset.
    """
    if split not in ("train", "val"):
        raise ValueError(f"Imagenette has the splits 'train' and 'val', got {split!r}")
    entry = REGISTRY["imagenette"]
    root = _download_root(root)
    if download:
        _download_archive("imagenette", root, progress)
    folder = root / entry.folder
    if not (folder / split).is_dir():
        raise _missing_data_error("Imagenette", entry, root, "load_imagenette", f"no folder {folder / split}")
    dataset = load_image_folder(folder, split, image_size, IMAGENET_MEAN, IMAGENET_STD, progress, cache_dir)
    dataset.class_names = [IMAGENETTE_CLASSES.get(name, name) for name in dataset.class_names]
    return dataset


# --------------------------------------------------------------------------------------------
# The user's photo folder, and the sample photos every user has
# --------------------------------------------------------------------------------------------

#: The environment variable that chooses the photo folder (an ImageFolder) for notebooks,
#: benchmarks and tests.
PHOTOS_VARIABLE = "COURSE_PHOTOS"


def photo_folder(folder: str | os.PathLike | None = None, required: bool = False) -> Path | None:
    """The photo folder to use: ``folder``, else ``$COURSE_PHOTOS``, else ``None`` (or, with
    ``required``, a ``FileNotFoundError`` saying how to choose one). A folder that is named but
    does not exist is an error either way."""
    chosen = folder if folder is not None else os.environ.get(PHOTOS_VARIABLE) or None
    if chosen is None:
        if required:
            raise FileNotFoundError(
                f"no photo folder chosen: pass one, or set {PHOTOS_VARIABLE}=/path/to/ImageFolder "
                "(root/<class>/*.jpg or root/train|val/<class>/*.jpg); without photos of your own, "
                "load_dataset('imagenette', download=True) fetches ImageNet photos"
            )
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        origin = "" if folder is not None else f" (from {PHOTOS_VARIABLE})"
        raise FileNotFoundError(f"the photo folder {path}{origin} does not exist")
    return path


#: The sample photos of :func:`load_samples`: scikit-image's ``skimage.data`` name, a readable
#: name, and the ImageNet class (index, torchvision's name) the photo shows, or ``None``.
SAMPLES: tuple[tuple[str, str, tuple[int, str] | None], ...] = (
    ("chelsea", "Chelsea the cat", (281, "tabby")),
    ("coffee", "a cup of coffee", (967, "espresso")),
    ("rocket", "a rocket on its launch pad", (812, "space shuttle")),
    ("astronaut", "an astronaut", None),
    ("brick", "brick wall (texture)", None),
    ("grass", "grass (texture)", None),
    ("gravel", "gravel (texture)", None),
)


def load_samples(image_size: int = 224) -> ImageTensorDataset:
    """Real photos every user has, offline: scikit-image's bundled, license-clean sample photos
    and textures (:data:`SAMPLES`), shorter side resized to ``image_size`` and centre-cropped,
    grayscale textures as RGB, normalized with the ImageNet statistics.

    Each photo is its own class (``class_names`` are the readable names); ``extras["imagenet_class"]``
    ``(N,)`` holds the ImageNet class each shows (-1 for none), for pretrained ImageNet models.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    try:
        import skimage.data
    except ImportError as error:
        raise ImportError(
            "the sample photos come with scikit-image: pip install scikit-image (make setup installs it)"
        ) from error
    pictures = []
    for name, _, _ in SAMPLES:
        array = getattr(skimage.data, name)()
        image = Image.fromarray(array).convert("RGB")
        pictures.append(_to_square_tensor(image, image_size))
    imagenet = torch.tensor([-1 if found is None else found[0] for _, _, found in SAMPLES])
    return ImageTensorDataset(
        torch.stack(pictures),
        torch.arange(len(SAMPLES)),
        [readable for _, readable, _ in SAMPLES],
        IMAGENET_MEAN,
        IMAGENET_STD,
        {"imagenet_class": imagenet},
    )
