"""ZFNet shapes and naming, layer removal, torchvision adapters, checkpoints."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from course_utils import models
from course_utils.layers import get_layer
from course_utils.models import CheckpointError, ZFNet, ZFNetConfig, count_parameters, load_checkpoint, save_checkpoint


def layer_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, layer in model.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape)
    return shapes


def test_zfnet_layer_names_and_shapes():
    model = ZFNet().eval()
    shapes = layer_shapes(model, torch.zeros(2, 3, 64, 64))
    assert list(shapes) == [
        "conv1",
        "relu1",
        "pool1",
        "conv2",
        "relu2",
        "pool2",
        "conv3",
        "relu3",
        "conv4",
        "relu4",
        "conv5",
        "relu5",
        "pool5",
        "flatten",
        "fc6",
        "relu6",
        "drop6",
        "fc7",
        "relu7",
        "drop7",
        "fc8",
    ]
    assert shapes["conv1"] == (2, 32, 32, 32)
    assert shapes["pool1"] == (2, 32, 16, 16)
    assert shapes["conv2"] == (2, 64, 16, 16)
    assert shapes["pool2"] == (2, 64, 8, 8)
    assert shapes["conv5"] == (2, 256, 8, 8)
    assert shapes["pool5"] == (2, 256, 4, 4)
    assert shapes["fc8"] == (2, 10)
    pool = get_layer(model, "pool1")
    assert (pool.kernel_size, pool.stride) == (3, 2)  # overlapping pooling as in the paper


def test_lcn_and_alexnet_style_first_layer():
    model = ZFNet(lcn=True, conv1_kernel=11, conv1_stride=4, num_classes=7)
    assert isinstance(model.norm1, nn.LocalResponseNorm) and isinstance(model.norm2, nn.LocalResponseNorm)
    assert model.conv1.kernel_size == (11, 11) and model.conv1.stride == (4, 4)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


@pytest.mark.parametrize("remove", [("conv3", "conv4"), ("fc7",), ("fc6", "fc7"), ("conv3", "conv4", "fc6", "fc7")])
def test_removable_layers(remove):
    full, reduced = ZFNet(), ZFNet(remove=remove)
    names = reduced.layer_names()
    for layer in remove:
        assert layer not in names and f"relu{layer[-1]}" not in names
    assert reduced(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert count_parameters(reduced) < count_parameters(full)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="removable layers"):
        ZFNetConfig(remove=("conv1",))
    with pytest.raises(ValueError, match="conv_widths needs 5"):
        ZFNetConfig(conv_widths=(8, 8))


def test_get_layer_lists_valid_names():
    with pytest.raises(KeyError, match="conv5.*fc8"):
        get_layer(ZFNet(), "conv9")


@pytest.mark.parametrize(
    "factory, tv_name, names",
    [
        (models.alexnet, "alexnet", ["conv1", "pool1", "conv5", "pool5", "fc6", "fc7", "fc8"]),
        (models.vgg16, "vgg16", ["conv1_1", "conv5_3", "pool5", "fc6", "fc8"]),
    ],
)
def test_torchvision_adapters_keep_the_computation(factory, tv_name, names):
    import torchvision

    torch.manual_seed(0)
    adapted = factory().eval()
    torch.manual_seed(0)
    original = getattr(torchvision.models, tv_name)(weights=None).eval()
    for name in names:
        get_layer(adapted, name)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(adapted(x), original(x))


def test_pretrained_weights_offline_error_names_url_and_folder(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(models.PretrainedWeightsError, match=r"alexnet-owt-.*\.pth.*checkpoints"):
        models.alexnet(pretrained=True)


def test_checkpoint_roundtrip_and_half_snapshots(tmp_path):
    model = ZFNet(conv_widths=(8, 8, 8, 8, 8), fc_widths=(16, 16)).eval()
    x = torch.randn(2, 3, 64, 64)
    save_checkpoint(tmp_path / "a.pt", model, epoch=3, class_names=["a"] * 10)
    loaded, meta = load_checkpoint(tmp_path / "a.pt")
    assert meta["epoch"] == 3 and loaded.config == model.config
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    save_checkpoint(tmp_path / "h.pt", model, half=True)
    half, _ = load_checkpoint(tmp_path / "h.pt")
    assert half.conv1.weight.dtype == torch.float32
    torch.testing.assert_close(half(x), model(x), rtol=1e-2, atol=1e-2)
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "a.pt").stat().st_size


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = ZFNet(conv_widths=(8, 8, 8, 8, 8), fc_widths=(16, 16))
    path = save_checkpoint(tmp_path / "c.pt", model, epoch=1)
    before = path.read_bytes()

    def crash(obj, stream, *args, **kwargs):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", ZFNet(remove=("fc7",)))
    with pytest.raises(CheckpointError, match="another architecture.*remove"):
        load_checkpoint(path, ZFNet())


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a course_utils ZFNet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
