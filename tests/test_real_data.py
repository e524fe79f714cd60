"""The real-data path on small files in the real formats: registry downloads (file:// URLs,
never the network), CIFAR-10 pickle batches, ImageFolder PNGs, the decode cache."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, Imagenette

from course_utils.data import real
from course_utils.data.real import (
    REGISTRY,
    DownloadError,
    RegistryEntry,
    download,
    load_cifar10,
    load_image_folder,
    load_imagenette,
)

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ----------------------------------------------------------------------------- builders


def cifar_batches(root: Path, per_batch: int = 4, seed: int = 0) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write ``root/cifar-10-batches-py`` as in the real archive: pickled dicts with ``data``
    ``(n, 3072)`` uint8 rows (1024 red, 1024 green, 1024 blue values, row-major) and ``labels``;
    ``batches.meta`` with ``label_names`` (here in reverse order, to show they are read).
    Returns ``{batch file: (data, labels)}``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for number, filename in enumerate([name for name, _ in CIFAR10.train_list + CIFAR10.test_list]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, size=per_batch)]
        batch = {
            "batch_label": f"batch {number + 1} of 6",
            "labels": labels,
            "data": data,
            "filenames": [f"image_{number}_{i}.png" for i in range(per_batch)],
        }
        (folder / filename).write_bytes(pickle.dumps(batch, protocol=2))
        written[filename] = (data, labels)
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_NAMES[::-1], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def tar_gz(source: Path, archive: Path) -> Path:
    """Pack the folder ``source`` into ``archive`` (top-level entry ``source.name``)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return archive


def serve(monkeypatch, name: str, archive: Path) -> None:
    """Point the registry entry ``name`` at ``archive`` (a file:// URL) and its md5."""
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(REGISTRY, name, replace(REGISTRY[name], url=archive.as_uri(), hash=f"md5:{md5}"))


def filled(colour: tuple[int, int, int], size: int) -> torch.Tensor:
    """The ``(3, size, size)`` uint8 image of one colour."""
    return torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, size, size)


def png(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def solid(colour: tuple[int, ...], mode: str = "RGB", size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new(mode, size, colour)


def colour_folder(root: Path) -> None:
    """Classes ``blue`` (2 RGB), ``grey`` (one grayscale "L" PNG), ``red`` (2 RGB + one RGBA PNG)."""
    png(root / "blue" / "a.png", solid((0, 0, 255)))
    png(root / "blue" / "b.png", solid((10, 20, 200)))
    png(root / "grey" / "a.png", solid(100, mode="L"))
    png(root / "red" / "a.png", solid((255, 0, 0)))
    png(root / "red" / "b.png", solid((200, 30, 40)))
    png(root / "red" / "c.png", solid((90, 60, 30, 128), mode="RGBA"))


def rewrite(path: Path, image: Image.Image) -> None:
    """Overwrite an image and move its mtime forward (coarse file-system clocks)."""
    status = path.stat()
    png(path, image)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))


@pytest.fixture
def offline(monkeypatch):
    """Any network access raises URLError, as on a machine without internet."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A CIFAR-style tar.gz served from a file:// URL through the registry entry ``cifar10``."""
    written = cifar_batches(tmp_path / "source")
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    serve(monkeypatch, "cifar10", tar_gz(tmp_path / "source" / "cifar-10-batches-py", archive))
    return archive, written


# ----------------------------------------------------------------------------- registry


def test_registry_matches_torchvision_urls_and_md5s():
    assert REGISTRY["cifar10"].url == CIFAR10.url
    assert REGISTRY["cifar10"].hash == f"md5:{CIFAR10.tgz_md5}"
    assert REGISTRY["cifar10"].folder == CIFAR10.base_folder
    url, md5 = Imagenette._ARCHIVES["160px"]
    assert (REGISTRY["imagenette"].url, REGISTRY["imagenette"].hash) == (url, f"md5:{md5}")
    assert REGISTRY["imagenette"].folder == Path(url).stem


@pytest.mark.parametrize("bad", ["c58f30108f718f92721af3b95e74349a", "md5:abc", "sha1:" + "0" * 40, "md5:" + "G" * 32])
def test_registry_entry_rejects_malformed_hash(bad):
    with pytest.raises(ValueError, match="md5:<32 hex digits>"):
        RegistryEntry(url="https://x/y.tgz", filename="y.tgz", hash=bad, description="y", folder="y")


def test_download_unknown_name_lists_registry(tmp_path):
    with pytest.raises(ValueError, match="cifar10, imagenette"):
        download("cifar100", tmp_path)


# ----------------------------------------------------------------------------- download


def test_download_fetches_verifies_and_extracts(tmp_path, cifar_archive):
    archive, written = cifar_archive
    root = tmp_path / "downloads"
    folder = download("cifar10", root, progress=False)
    assert folder == root / "cifar-10-batches-py"
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(list(written) + ["batches.meta"])


def test_download_uses_extracted_folder_or_cached_archive_offline(tmp_path, cifar_archive, monkeypatch):
    root = tmp_path / "downloads"
    folder = download("cifar10", root, progress=False)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    assert download("cifar10", root) == folder
    # archive present, folder gone: the verified archive is extracted again, without network
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    assert download("cifar10", root) == folder
    assert (folder / "test_batch").is_file()


def test_download_environment_variable_sets_default_root(tmp_path, cifar_archive, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "env-root"))
    assert download("cifar10", progress=False) == tmp_path / "env-root" / "cifar-10-batches-py"


def test_download_offline_says_what_to_fetch_and_where(tmp_path, offline):
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError) as raised:
        download("cifar10", root, progress=False)
    message = str(raised.value)
    assert REGISTRY["cifar10"].url in message
    assert str(root / "cifar-10-python.tar.gz") in message
    assert "c58f30108f718f92721af3b95e74349a" in message
    assert list(root.iterdir()) == []


def test_download_verifies_sha256(tmp_path, cifar_archive, monkeypatch):
    archive, _ = cifar_archive
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(REGISTRY, "cifar10", replace(REGISTRY["cifar10"], hash=f"sha256:{sha256}"))
    assert (download("cifar10", tmp_path / "good", progress=False) / "batches.meta").is_file()
    monkeypatch.setitem(REGISTRY, "cifar10", replace(REGISTRY["cifar10"], hash=f"sha256:{sha256[::-1]}"))
    with pytest.raises(DownloadError, match=f"sha256 is {sha256}, expected {sha256[::-1]}"):
        download("cifar10", tmp_path / "bad", progress=False)


def test_download_hash_mismatch_deletes_the_file(tmp_path, cifar_archive, monkeypatch):
    monkeypatch.setitem(REGISTRY, "cifar10", replace(REGISTRY["cifar10"], hash="md5:" + "0" * 32))
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError, match="hash mismatch.*nothing was kept"):
        download("cifar10", root, progress=False)
    assert list(root.iterdir()) == []


def test_cached_archive_with_wrong_hash_is_deleted(tmp_path, cifar_archive, offline):
    root = tmp_path / "downloads"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"truncated")
    with pytest.raises(DownloadError, match="hash mismatch for the cached file"):
        download("cifar10", root)
    assert list(root.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, cifar_archive, monkeypatch):
    class DropsConnection(io.BytesIO):
        headers = {"Content-Length": "4096"}

        def read(self, size=-1):
            if self.tell() >= 1024:
                raise TimeoutError("The read operation timed out")
            return super().read(1024)

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: DropsConnection(bytes(4096)))
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError, match="timed out"):
        download("cifar10", root, progress=False)
    assert list(root.iterdir()) == []


def test_archive_without_the_expected_folder_is_reported(tmp_path, monkeypatch):
    (tmp_path / "source" / "other").mkdir(parents=True)
    serve(monkeypatch, "cifar10", tar_gz(tmp_path / "source" / "other", tmp_path / "wrong.tar.gz"))
    root = tmp_path / "downloads"
    with pytest.raises(DownloadError, match="should contain the folder 'cifar-10-batches-py', it contains other"):
        download("cifar10", root, progress=False)
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]


# ----------------------------------------------------------------------------- CIFAR-10


def expected_cifar(written: dict, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.concatenate([written[name][0] for name in files])
    labels = sum((written[name][1] for name in files), [])
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.tensor(labels)


def test_load_cifar10_reads_pickle_batches(tmp_path):
    written = cifar_batches(tmp_path)
    train = load_cifar10("train", root=tmp_path)
    images, labels = expected_cifar(written, [f"data_batch_{i}" for i in range(1, 6)])
    assert train.images.dtype == torch.uint8 and train.images.shape == (20, 3, 32, 32)
    assert torch.equal(train.images, images)
    assert torch.equal(train.labels, labels)
    assert train.class_names == CIFAR_NAMES[::-1]
    assert (train.mean, train.std) == (real.CIFAR10_MEAN, real.CIFAR10_STD)
    # first pixel of the first image is values 0, 1024 and 2048 of its row
    assert train.images[0, :, 0, 0].tolist() == written["data_batch_1"][0][0, [0, 1024, 2048]].tolist()
    test, val = load_cifar10("test", root=tmp_path), load_cifar10("val", root=tmp_path)
    images, labels = expected_cifar(written, ["test_batch"])
    assert torch.equal(test.images, images) and torch.equal(test.labels, labels)
    assert torch.equal(val.images, test.images) and torch.equal(val.labels, test.labels)


def test_load_cifar10_download_goes_through_registry(tmp_path, cifar_archive, monkeypatch):
    _, written = cifar_archive
    root = tmp_path / "downloads"
    first = load_cifar10("test", root=root, download=True)
    images, _ = expected_cifar(written, ["test_batch"])
    assert torch.equal(first.images, images)
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    assert torch.equal(load_cifar10("test", root=root, download=True).images, images)


def test_load_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as raised:
        load_cifar10("train", root=tmp_path)
    message = str(raised.value)
    assert "download=True" in message
    assert str(tmp_path / "cifar-10-python.tar.gz") in message and REGISTRY["cifar10"].url in message


def test_load_cifar10_partial_folder_names_missing_batch(tmp_path):
    cifar_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        load_cifar10("test", root=tmp_path)


def test_load_cifar10_rejects_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="'train', 'test' or 'val'"):
        load_cifar10("validation", root=tmp_path)


# ----------------------------------------------------------------------------- ImageFolder


def test_image_folder_decodes_colours_labels_and_modes(tmp_path):
    colour_folder(tmp_path / "photos")
    data = load_image_folder(tmp_path / "photos", image_size=16, progress=False, cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.class_names == ["blue", "grey", "red"]
    assert data.labels.tolist() == [0, 0, 1, 2, 2, 2]
    expected = [(0, 0, 255), (10, 20, 200), (100, 100, 100), (255, 0, 0), (200, 30, 40), (90, 60, 30)]
    for image, colour in zip(data.images, expected):
        assert torch.equal(image, filled(colour, 16))


def test_image_folder_resizes_shorter_side_and_centre_crops(tmp_path):
    # 48x32 image: red columns 0-3, green 4-43, blue 44-47. Shorter side 32 -> 16 gives 24x16,
    # the centre crop keeps columns 4-19 of those, i.e. source columns 8-39: only green.
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :4] = (255, 0, 0)
    pixels[:, 4:44] = (0, 255, 0)
    pixels[:, 44:] = (0, 0, 255)
    png(tmp_path / "photos" / "wide" / "a.png", Image.fromarray(pixels))
    data = load_image_folder(tmp_path / "photos", image_size=16, progress=False, cache_dir=tmp_path / "cache")
    assert data.images.shape == (1, 3, 16, 16)
    assert torch.equal(data.images[0], filled((0, 255, 0), 16))


def test_image_folder_split_layout_class_names_and_train_statistics(tmp_path):
    root = tmp_path / "photos"
    png(root / "train" / "n001" / "a.png", solid((255, 0, 0)))
    png(root / "train" / "n001" / "b.png", solid((255, 255, 0)))
    png(root / "train" / "n002" / "a.png", solid((0, 0, 51)))
    png(root / "val" / "n001" / "a.png", solid((0, 255, 0)))
    png(root / "val" / "n002" / "a.png", solid((0, 0, 255)))
    (root / "classes.tsv").write_text("n001\tgoldfish\nn002\tschool bus\n")
    options = dict(image_size=16, progress=False, cache_dir=tmp_path / "cache")
    train, val = load_image_folder(root, "train", **options), load_image_folder(root, "val", **options)
    assert val.class_names == train.class_names == ["goldfish", "school bus"]
    assert val.labels.tolist() == [0, 1] and train.labels.tolist() == [0, 0, 1]
    assert val.images[1, :, 0, 0].tolist() == [0, 0, 255]
    train_pixels = train.images.double().permute(1, 0, 2, 3).reshape(3, -1) / 255
    assert np.allclose(val.mean, train_pixels.mean(1))
    assert np.allclose(val.std, train_pixels.std(1, unbiased=False))
    assert np.allclose(train.mean, [2 / 3, 1 / 3, 1 / 15]) and (val.mean, val.std) == (train.mean, train.std)


def test_image_folder_statistics_given_or_from_loaded_images(tmp_path):
    colour_folder(tmp_path / "photos")
    options = dict(image_size=16, progress=False, cache_dir=tmp_path / "cache")
    given = load_image_folder(tmp_path / "photos", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.1), **options)
    assert (given.mean, given.std) == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.1))
    computed = load_image_folder(tmp_path / "photos", **options)
    pixels = computed.images.double().permute(1, 0, 2, 3).reshape(3, -1) / 255
    assert np.allclose(computed.mean, pixels.mean(1)) and np.allclose(computed.std, pixels.std(1, unbiased=False))


def test_image_folder_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    colour_folder(tmp_path / "photos")
    options = dict(image_size=16, progress=False, cache_dir=tmp_path / "cache")
    first = load_image_folder(tmp_path / "photos", **options)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    decode = real._decode_images
    monkeypatch.setattr(real, "_decode_images", lambda *a, **k: pytest.fail("cache not used"))
    cached = load_image_folder(tmp_path / "photos", **options)
    assert torch.equal(cached.images, first.images) and torch.equal(cached.labels, first.labels)
    assert (cached.class_names, cached.mean, cached.std) == (first.class_names, first.mean, first.std)

    monkeypatch.setattr(real, "_decode_images", decode)
    rewrite(tmp_path / "photos" / "blue" / "a.png", solid((7, 8, 9)))
    changed = load_image_folder(tmp_path / "photos", **options)
    assert changed.images[0, :, 0, 0].tolist() == [7, 8, 9]
    assert torch.equal(changed.images[1:], first.images[1:])
    resized = load_image_folder(tmp_path / "photos", **{**options, "image_size": 8})
    assert resized.images.shape == (6, 3, 8, 8) and resized.images[0, :, 0, 0].tolist() == [7, 8, 9]


def test_image_folder_corrupt_cache_is_rebuilt(tmp_path):
    colour_folder(tmp_path / "photos")
    options = dict(image_size=16, progress=False, cache_dir=tmp_path / "cache")
    first = load_image_folder(tmp_path / "photos", **options)
    (cache_file,) = (tmp_path / "cache").glob("*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    assert torch.equal(load_image_folder(tmp_path / "photos", **options).images, first.images)


def test_image_folder_errors(tmp_path):
    options = dict(progress=False, cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing", **options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an image folder.*<folder>/<class name>/<image file>"):
        load_image_folder(tmp_path / "empty", **options)
    png(tmp_path / "flat" / "a.png", solid((1, 2, 3)))
    with pytest.raises(ValueError, match="Couldn't find any class folder"):
        load_image_folder(tmp_path / "flat", **options)
    (tmp_path / "no-images" / "cats").mkdir(parents=True)
    (tmp_path / "no-images" / "cats" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no valid file for the classes cats"):
        load_image_folder(tmp_path / "no-images", **options)


def test_image_folder_argument_errors(tmp_path):
    root = tmp_path / "photos"
    png(root / "train" / "a" / "x.png", solid((1, 2, 3)))
    png(root / "val" / "a" / "x.png", solid((1, 2, 3)))
    options = dict(progress=False, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="split folders train, val; pass split="):
        load_image_folder(root, "test", **options)
    with pytest.raises(ValueError, match="split folders train, val; pass split="):
        load_image_folder(root, **options)
    with pytest.raises(ValueError, match="positive int"):
        load_image_folder(root, "train", image_size=0, **options)
    with pytest.raises(ValueError, match="both mean and std"):
        load_image_folder(root, "train", mean=(0.5, 0.5, 0.5), **options)
    with pytest.raises(ValueError, match="3 values each"):
        load_image_folder(root, "train", mean=(0.5,), std=(0.2,), **options)
    (root / "classes.tsv").write_text("a apple\n")
    with pytest.raises(ValueError, match=r"classes.tsv line 1: expected '<folder name><TAB><readable name>'"):
        load_image_folder(root, "train", **options)


# ----------------------------------------------------------------------------- Imagenette


def test_load_imagenette_through_registry(tmp_path, monkeypatch):
    source = tmp_path / "source" / "imagenette2-160"
    png(source / "train" / "n01440764" / "a.png", solid((255, 0, 0), size=(24, 16)))
    png(source / "train" / "n03888257" / "a.png", solid((0, 255, 0), size=(16, 24)))
    png(source / "val" / "n01440764" / "a.png", solid((0, 0, 255), size=(20, 20)))
    png(source / "val" / "n03888257" / "a.png", solid((9, 9, 9), size=(20, 20)))
    serve(monkeypatch, "imagenette", tar_gz(source, tmp_path / "imagenette2-160.tgz"))
    root = tmp_path / "downloads"
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_imagenette("val", root=root, cache_dir=tmp_path / "cache")
    val = load_imagenette("val", root=root, download=True, image_size=8, progress=False, cache_dir=tmp_path / "cache")
    assert val.class_names == ["tench", "parachute"]
    assert val.images.shape == (2, 3, 8, 8) and val.images[:, :, 4, 4].tolist() == [[0, 0, 255], [9, 9, 9]]
    assert (val.mean, val.std) == (real.IMAGENET_MEAN, real.IMAGENET_STD)
    with pytest.raises(ValueError, match="'train' and 'val'"):
        load_imagenette("test", root=root)


# ----------------------------------------------------------------------------- the real-photo slice


def test_the_photo_folder_loads_as_pil_decodes_it(photos, tmp_path):
    """The user's photo folder (COURSE_PHOTOS) through load_image_folder: every image, its class
    folder as label, readable names from classes.tsv when there is one, pixels as PIL decodes them."""
    split = "val" if (photos / "val").is_dir() else None
    root = photos / split if split else photos
    loaded = load_image_folder(
        photos,
        split,
        image_size=64,
        mean=real.IMAGENET_MEAN,
        std=real.IMAGENET_STD,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    counts = [sum(1 for f in (root / name).iterdir() if f.is_file()) for name in folders]
    assert loaded.images.shape == (sum(counts), 3, 64, 64)
    assert torch.bincount(loaded.labels, minlength=len(folders)).tolist() == counts
    if (photos / "classes.tsv").is_file():
        names = dict(line.split("\t") for line in (photos / "classes.tsv").read_text().splitlines())
        assert loaded.class_names == [names.get(name, name) for name in folders]
    first_file = sorted((root / folders[0]).iterdir())[0]
    with Image.open(first_file) as image:
        expected = real._to_square_tensor(image.convert("RGB"), 64)
    assert torch.equal(loaded.images[0], expected)
