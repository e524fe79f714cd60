"""Real photos and ImageNet models, tested offline: pretrained weights come from a temporary torch
cache (random weights under torchvision's file name, as torchvision would have stored the
download) or from a local HTTP server; the sample photos ship with scikit-image; the photo
folder is chosen with COURSE_PHOTOS."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torchvision

from course_utils import models
from course_utils.data import PHOTOS_VARIABLE, load_dataset, photo_folder
from course_utils.deconvnet import project_activation
from course_utils.layers import layer_outputs

ALEXNET_WEIGHTS = torchvision.models.AlexNet_Weights.IMAGENET1K_V1


@pytest.fixture
def torch_cache(tmp_path, monkeypatch) -> Path:
    """An empty torch cache (TORCH_HOME) for this test only."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(models.OFFLINE_VARIABLE, raising=False)
    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_random_weights(torch_cache: Path, network: str = "alexnet") -> dict[str, torch.Tensor]:
    """Random weights of torchvision's ``network`` (``"alexnet"``, ``"vgg16"``) saved where
    torchvision would keep its ImageNet download, under its file name."""
    torch.manual_seed(0)
    state = getattr(torchvision.models, network)(weights=None).state_dict()
    weights = {"alexnet": ALEXNET_WEIGHTS, "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1}[network]
    torch_cache.mkdir(parents=True, exist_ok=True)
    torch.save(state, torch_cache / Path(weights.url).name)
    return state


def test_pretrained_alexnet_loads_the_cached_file_and_names_imagenet_classes(torch_cache):
    state = cache_random_weights(torch_cache)
    model = models.alexnet(pretrained=True).eval()
    torch.testing.assert_close(model.conv1.weight, state["features.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.fc8.weight, state["classifier.6.weight"], rtol=0, atol=0)
    assert len(model.class_names) == 1000 and model.class_names[281] == "tabby"
    assert not models.genuine_weights(ALEXNET_WEIGHTS)  # random, not torchvision's file
    samples = load_dataset("samples")
    projection = project_activation(model, samples.normalize(samples.images[:1]), "conv5", 3)
    assert projection.shape == (3, 224, 224) and torch.isfinite(projection).all()


def test_offline_without_cached_weights_names_the_file_the_url_and_the_folder(torch_cache, monkeypatch):
    monkeypatch.setenv(models.OFFLINE_VARIABLE, "1")

    def no_network(*args, **kwargs):
        raise AssertionError("COURSE_OFFLINE=1 must not try the network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    url = ALEXNET_WEIGHTS.url
    with pytest.raises(models.PretrainedWeightsError) as raised:
        models.alexnet(pretrained=True)
    message = str(raised.value)
    assert "COURSE_OFFLINE is set" in message and url in message and str(torch_cache) in message
    assert "alexnet-owt-7be5be79.pth" in message
    with pytest.raises(models.PretrainedWeightsError, match="vgg16-397923af.pth"):
        models.vgg16(pretrained=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "served"``; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_weights_download_from_a_server_on_first_use_and_check_the_hash(torch_cache, local_server):
    served, base = local_server
    torch.manual_seed(1)
    state = torchvision.models.alexnet(weights=None).state_dict()
    payload = served / "payload.pth"
    torch.save(state, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    name = f"alexnet-test-{digest[:8]}.pth"
    payload.rename(served / name)
    weights = SimpleNamespace(url=f"{base}/{name}")
    net = torchvision.models.alexnet(weights=None)
    models._load_imagenet_weights(net, weights, progress=False)  # downloads into the empty cache
    assert (torch_cache / name).is_file() and models.genuine_weights(weights)
    torch.testing.assert_close(net.features[0].weight, state["features.0.weight"], rtol=0, atol=0)

    wrong = f"alexnet-test-{'0' * 8}.pth"  # a file whose content does not match its name's hash
    (served / wrong).write_bytes((served / name).read_bytes())
    with pytest.raises(models.PretrainedWeightsError, match=rf"could not load the pretrained weights {wrong}"):
        models._load_imagenet_weights(net, SimpleNamespace(url=f"{base}/{wrong}"), progress=False)
    assert not (torch_cache / wrong).exists()
    with pytest.raises(models.PretrainedWeightsError, match="Download .*missing.pth on a machine with internet"):
        models._load_imagenet_weights(net, SimpleNamespace(url=f"{base}/missing.pth"), progress=False)


def test_the_sample_photos_ship_with_the_course():
    samples = load_dataset("samples")
    assert samples.images.shape == (7, 3, 224, 224) and samples.images.dtype == torch.uint8
    assert samples.class_names[0] == "Chelsea the cat" and samples.extras["imagenet_class"][0] == 281
    assert samples.mean == pytest.approx((0.485, 0.456, 0.406))
    small = load_dataset("samples", image_size=64)
    assert small.images.shape == (7, 3, 64, 64)
    textures = small.images[4:]  # grayscale textures become RGB with equal channels
    assert torch.equal(textures[:, 0], textures[:, 1]) and torch.equal(textures[:, 1], textures[:, 2])
    with pytest.raises(ValueError, match="one split"):
        load_dataset("samples", "val")
    with pytest.raises(ValueError, match="image_size must be an integer"):
        load_dataset("samples", image_size=2.5)


def test_the_photo_folder_is_chosen_by_argument_or_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(PHOTOS_VARIABLE, raising=False)
    assert photo_folder() is None
    with pytest.raises(FileNotFoundError, match="set COURSE_PHOTOS=/path/to/ImageFolder.*imagenette"):
        photo_folder(required=True)
    monkeypatch.setenv(PHOTOS_VARIABLE, str(tmp_path))
    assert photo_folder() == tmp_path
    assert photo_folder(tmp_path / "..") == tmp_path / ".."
    monkeypatch.setenv(PHOTOS_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"missing \(from COURSE_PHOTOS\) does not exist"):
        photo_folder()


def test_imagenet_models_take_the_samples_end_to_end():
    model = models.vgg16().eval()
    samples = load_dataset("samples")
    outputs = layer_outputs(model, samples.normalize(samples.images[:2]), ["pool5", "fc8"])
    assert outputs["pool5"].shape == (2, 512, 7, 7) and outputs["fc8"].shape == (2, 1000)
    assert model.class_names[967] == "espresso"


@pytest.mark.slow
def test_notebook_09_runs_on_cached_random_weights_and_a_photo_folder(torch_cache, tmp_path, monkeypatch):
    """Notebook 09 headless on the pretrained path (random weights under torchvision's file name
    in a temporary torch cache) and a small photo folder; it does not assert the findings on
    weights that are not torchvision's own, and says so."""
    import nbformat
    from nbclient import NotebookClient
    from PIL import Image

    cache_random_weights(torch_cache)
    cache_random_weights(torch_cache, "vgg16")  # the VGG16 section runs when its file is cached
    photos = tmp_path / "photos"
    for number, name in enumerate(("red", "blue")):
        (photos / name).mkdir(parents=True)
        for index in range(6):
            Image.new("RGB", (40, 40), (200 * (1 - number), 30 * index, 200 * number)).save(
                photos / name / f"{index}.png"
            )
    monkeypatch.setenv("COURSE_PHOTOS", str(photos))
    torch.manual_seed(0)  # the course ZFNet "trained on the photos": random weights, the photos' classes
    own = models.ZFNet(
        models.ZFNetConfig(num_classes=2, image_size=64, conv_widths=(8, 8, 8, 8, 8), fc_widths=(16, 16))
    )
    checkpoint = models.save_checkpoint(
        tmp_path / "own.pt", own.eval(), class_names=["blue", "red"], mean=[0.5] * 3, std=[0.25] * 3
    )
    monkeypatch.setenv(models.PHOTO_MODEL_VARIABLE, str(checkpoint))
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(models.OFFLINE_VARIABLE, "1")
    path = Path(__file__).resolve().parents[1] / "notebooks" / "09_real_photos.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    text = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "torchvision's ImageNet weights: no (the findings below are not asserted)" in text
    assert "Running on random weights" not in text  # the cached file was loaded
    assert "Skipped: no photo folder" not in text
    assert "VGG16 on the cat:" in text and "VGG16 skipped" not in text
    assert "Skipped: no checkpoint" not in text and "course ZFNet, the smallest rotation" in text
    figures_09 = sum(
        "image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", [])
    )
    # the samples; per network 2 occlusions, a rotation, top-9 (AlexNet and the ZFNet); the deconvnet table; filters
    assert figures_09 == 1 + 2 * 4 + 1 + 1
    assert text.count(" without the square, ") == 4  # the cat and the coffee, AlexNet and the course ZFNet
