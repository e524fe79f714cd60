"""Networks with the paper's layer names.

Every model in the course is a flat :class:`NamedSequential`: an ``nn.Sequential`` whose
children are named like the layers of Zeiler & Fergus (``conv1`` ... ``conv5``, ``fc6``,
``fc7``, ``fc8``, with ``relu*``, ``pool*``, ``norm*`` and ``drop*`` in between). Code
addresses layers by name (``model.conv5`` or :func:`course_utils.layers.get_layer`), never by index.

* :class:`ZFNet` is the course's own network, sized for 64x64 inputs, with configurable
  widths, optional local contrast normalization and removable layers (for the ablation).
* :func:`alexnet` and :func:`vgg16` wrap torchvision's models under the same naming; their
  ImageNet weights load from the torch cache when present.
* :func:`save_checkpoint` / :func:`load_checkpoint` store the architecture with the weights,
  write atomically and refuse a checkpoint of another architecture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.core import DATA_DIR, atomic_write, file_hash
from .layers import get_layer

__all__ = [
    "OFFLINE_VARIABLE",
    "PretrainedWeightsError",
    "genuine_weights",
    "weights_file",
    "tensors_sha256",
    "NamedSequential",
    "ZFNetConfig",
    "ZFNet",
    "REMOVABLE_LAYERS",
    "alexnet",
    "vgg16",
    "count_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "CHECKPOINT_DIR",
    "load_shipped_model",
    "PHOTO_MODEL_VARIABLE",
    "photo_model_checkpoint",
]

#: Where the shipped checkpoints live (``final.pt`` and the epoch snapshots ``epoch_XX.pt``).
CHECKPOINT_DIR = DATA_DIR / "checkpoints"

REMOVABLE_LAYERS = ("conv3", "conv4", "conv5", "fc6", "fc7")


class NamedSequential(nn.Sequential):
    """``nn.Sequential`` whose children carry the paper's layer names.

    Input ``(N, 3, H, W)`` float images (normalized), output ``(N, num_classes)`` logits.
    ``class_names``: the names of the outputs when known (ImageNet's for :func:`alexnet` and
    :func:`vgg16`), else ``None``.
    """

    class_names: list[str] | None = None

    def layer_names(self) -> list[str]:
        """Names of the children in forward order."""
        return [name for name, _ in self.named_children()]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class ZFNetConfig:
    """Architecture of a :class:`ZFNet`; stored in checkpoints.

    Attributes:
        num_classes: outputs of ``fc8``.
        image_size: side of the square input images (training sets it from the data: the embedded
            dataset's :data:`~course_utils.data.embedded.IMAGE_SIZE`, a photo folder's chosen size).
        conv_widths: output channels of conv1..conv5.
        fc_widths: output features of fc6, fc7.
        conv1_kernel, conv1_stride: the first layer's filter size and stride (7/2 is the
            paper's choice; 11/4 is AlexNet's, used in the architecture-selection notebook).
        lcn: add local contrast (response) normalization after pool1 and pool2.
        dropout: dropout probability after fc6 and fc7 (the paper: 0.5; the course trains
            without, since at its budget of epochs dropout 0.5 keeps the net far from fitting
            its training set - see the README).
        conv1_init_std: standard deviation of conv1's initial weights (paper: 0.01, far below
            the RMS cap, so the first layer learns smooth filters instead of keeping its
            initialization noise); ``None`` uses He initialization like the other layers.
        remove: layers left out, a subset of ``REMOVABLE_LAYERS`` (Table 3's ablation).
    """

    num_classes: int = 10
    image_size: int = 64
    conv_widths: tuple[int, int, int, int, int] = (32, 64, 96, 96, 256)
    fc_widths: tuple[int, int] = (256, 256)
    conv1_kernel: int = 7
    conv1_stride: int = 2
    lcn: bool = False
    dropout: float = 0.0
    conv1_init_std: float | None = 0.01
    remove: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Normalize lists (e.g. from JSON) to tuples so configs compare equal.
        object.__setattr__(self, "conv_widths", tuple(int(w) for w in self.conv_widths))
        object.__setattr__(self, "fc_widths", tuple(int(w) for w in self.fc_widths))
        object.__setattr__(self, "remove", tuple(sorted(set(self.remove))))
        if len(self.conv_widths) != 5 or len(self.fc_widths) != 2:
            raise ValueError("conv_widths needs 5 entries (conv1..conv5) and fc_widths 2 (fc6, fc7)")
        unknown = set(self.remove) - set(REMOVABLE_LAYERS)
        if unknown:
            raise ValueError(f"cannot remove {sorted(unknown)}; removable layers are {REMOVABLE_LAYERS}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ZFNetConfig:
        return cls(**values)


class ZFNet(NamedSequential):
    """ZFNet-style convnet for small images (default 64x64).

    conv1 (7x7/2) -> relu1 -> pool1 (3x3/2, overlapping) [-> norm1]
    -> conv2 (5x5/1) -> relu2 -> pool2 (3x3/2) [-> norm2]
    -> conv3, conv4, conv5 (3x3/1) with ReLUs -> pool5 (3x3/2)
    -> flatten -> fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 -> fc8.

    Shapes for the default config: input ``(N, 3, 64, 64)``; conv1 ``(N, 32, 32, 32)``;
    pool1 ``(N, 32, 16, 16)``; conv2 ``(N, 64, 16, 16)``; pool2 ``(N, 64, 8, 8)``;
    conv3..5 ``(N, C, 8, 8)``; pool5 ``(N, 256, 4, 4)``; fc8 ``(N, num_classes)``.
    """

    def __init__(self, config: ZFNetConfig | None = None, **overrides: Any) -> None:
        config = dataclasses.replace(config or ZFNetConfig(), **overrides)
        c1, c2, c3, c4, c5 = config.conv_widths
        k1 = config.conv1_kernel
        layers: list[tuple[str, nn.Module]] = [
            ("conv1", nn.Conv2d(3, c1, k1, stride=config.conv1_stride, padding=k1 // 2)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        if config.lcn:
            layers.append(("norm1", nn.LocalResponseNorm(5)))
        layers += [
            ("conv2", nn.Conv2d(c1, c2, 5, stride=1, padding=2)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        if config.lcn:
            layers.append(("norm2", nn.LocalResponseNorm(5)))
        channels = c2
        for index, width in zip((3, 4, 5), (c3, c4, c5)):
            if f"conv{index}" in config.remove:
                continue
            layers += [
                (f"conv{index}", nn.Conv2d(channels, width, 3, padding=1)),
                (f"relu{index}", nn.ReLU()),
            ]
            channels = width
        layers += [("pool5", nn.MaxPool2d(3, stride=2, padding=1)), ("flatten", nn.Flatten())]
        side = config.image_size
        for stride in (config.conv1_stride, 2, 2, 2):  # conv1, pool1, pool2, pool5
            side = (side - 1) // stride + 1
        features = channels * side * side
        for index, width in zip((6, 7), config.fc_widths):
            if f"fc{index}" in config.remove:
                continue
            layers += [
                (f"fc{index}", nn.Linear(features, width)),
                (f"relu{index}", nn.ReLU()),
                (f"drop{index}", nn.Dropout(config.dropout)),
            ]
            features = width
        layers.append(("fc8", nn.Linear(features, config.num_classes)))
        super().__init__(OrderedDict(layers))
        self.config = config
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialization for the ReLU layers but conv1 (``config.conv1_init_std``) and fc8
        (std 0.01, as in the paper, so the first predictions are near uniform); biases start at zero."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        fc8, conv1 = get_layer(self, "fc8"), get_layer(self, "conv1")
        assert isinstance(fc8, nn.Linear) and isinstance(conv1, nn.Conv2d)
        nn.init.normal_(fc8.weight, std=0.01)
        if self.config.conv1_init_std is not None:
            nn.init.normal_(conv1.weight, std=self.config.conv1_init_std)


def _rename(modules: Iterable[nn.Module], names: Iterable[str]) -> list[tuple[str, nn.Module]]:
    modules, names = list(modules), list(names)
    assert len(modules) == len(names), (len(modules), len(names))
    return list(zip(names, modules))


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are not in the torch cache and cannot be downloaded; the message names
    the file, its URL and the folder to put it in."""


#: Set to 1 to never download (weights must already be in the torch cache).
OFFLINE_VARIABLE = "COURSE_OFFLINE"


def weights_file(weights: Any) -> Path:
    """Where torch keeps a torchvision weights file: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def genuine_weights(weights: Any) -> bool:
    """Whether the cached file of ``weights`` is torchvision's own: its SHA-256 starts with the
    hash in the file name (``alexnet-owt-7be5be79.pth``), as torchvision checks on download. A
    file put there by hand (a test's random weights) is not, and findings about ImageNet
    features should not be asserted on it."""
    path = weights_file(weights)
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    return path.is_file() and match is not None and file_hash(path).startswith(match.group(1))


def _load_imagenet_weights(model: nn.Module, weights: Any, progress: bool = True) -> None:
    """Load torchvision ImageNet weights from the torch cache, downloading them on first use
    (with a progress bar; torchvision checks the hash). Offline, or with ``COURSE_OFFLINE=1``,
    and nothing cached: :class:`PretrainedWeightsError` naming the file, its URL and the folder."""
    target = weights_file(weights)
    how = (
        f"Download {weights.url} on a machine with internet access and copy it to {target.parent}/ "
        f"(as {target.name}), then call again."
    )
    if not target.is_file() and os.environ.get(OFFLINE_VARIABLE, "") not in ("", "0"):
        raise PretrainedWeightsError(f"{OFFLINE_VARIABLE} is set and {target.name} is not in the torch cache. {how}")
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, progress=progress, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
        raise PretrainedWeightsError(f"could not load the pretrained weights {target.name} ({error}). {how}") from error
    model.load_state_dict(state)


def _flat(
    net: nn.Module, feature_names: list[str], classifier_names: list[str], class_names: list[str] | None
) -> NamedSequential:
    """A torchvision ``features / avgpool / classifier`` network as one flat, named sequence,
    with ``class_names`` (ImageNet's, from torchvision's weights metadata) as an attribute."""
    features, avgpool, classifier = (get_layer(net, name) for name in ("features", "avgpool", "classifier"))
    layers = (
        _rename(features.children(), feature_names)
        + [("avgpool", avgpool), ("flatten", nn.Flatten())]
        + _rename(classifier.children(), classifier_names)
    )
    flat = NamedSequential(OrderedDict(layers))
    flat.class_names = list(class_names) if class_names is not None else None
    return flat


def alexnet(pretrained: bool = False, num_classes: int = 1000) -> NamedSequential:
    """torchvision AlexNet with the paper's names (input ``(N, 3, 224, 224)``).

    Names: conv1, relu1, pool1, conv2, relu2, pool2, conv3, relu3, conv4, relu4, conv5,
    relu5, pool5, avgpool, flatten, drop6, fc6, relu6, drop7, fc7, relu7, fc8. The modules
    are torchvision's own (in-place ReLUs included). ``pretrained=True`` loads torchvision's
    ImageNet weights, downloading them into the torch cache on first use (see
    :class:`PretrainedWeightsError` offline); ``class_names`` are ImageNet's ("tabby", ...).
    """
    from torchvision.models import AlexNet_Weights
    from torchvision.models import alexnet as tv_alexnet

    net = tv_alexnet(weights=None, num_classes=num_classes)
    if pretrained:
        _load_imagenet_weights(net, AlexNet_Weights.IMAGENET1K_V1)
    categories = AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    feature_names = [
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
    ]
    classifier_names = ["drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
    return _flat(net, feature_names, classifier_names, categories if num_classes == 1000 else None)


def vgg16(pretrained: bool = False, num_classes: int = 1000) -> NamedSequential:
    """torchvision VGG16 with paper-style names (input ``(N, 3, 224, 224)``).

    Convolutions are ``conv{block}_{index}`` (conv1_1 ... conv5_3) with ``relu{block}_{index}``
    after each, ``pool1`` ... ``pool5`` closing the blocks, then avgpool, flatten, fc6, relu6,
    drop6, fc7, relu7, drop7, fc8. ``pretrained`` and ``class_names`` as for :func:`alexnet`.
    """
    from torchvision.models import VGG16_Weights
    from torchvision.models import vgg16 as tv_vgg16

    net = tv_vgg16(weights=None, num_classes=num_classes)
    if pretrained:
        _load_imagenet_weights(net, VGG16_Weights.IMAGENET1K_V1)
    categories = VGG16_Weights.IMAGENET1K_V1.meta["categories"]
    feature_names = []
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for index in range(1, convs + 1):
            feature_names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        feature_names.append(f"pool{block}")
    classifier_names = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    return _flat(net, feature_names, classifier_names, categories if num_classes == 1000 else None)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or of another architecture."""


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (in name order): what a
    checkpoint records of its weights and checks on loading."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: ZFNet, **metadata: Any) -> Path:
    """Write ``model`` (its config and weights) plus ``metadata`` atomically to ``path``.

    The file appears complete or not at all: it is written to a temporary file in the same
    folder and renamed. It records the SHA-256 of its tensors (:func:`tensors_sha256`), which
    :func:`load_checkpoint` verifies. ``metadata`` may hold e.g. ``epoch``, ``class_names``,
    ``mean``, ``std``, ``history`` (plain numbers, strings, lists, dicts and tensors: anything
    else is refused here, since a safe load could not read it back), and ``half=True`` stores
    the weights in float16.
    """
    path = Path(path)
    half = bool(metadata.pop("half", False))
    try:
        buffer = io.BytesIO()
        torch.save(metadata, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint metadata for {path} could not be loaded back safely ({type(error).__name__}: {error}); "
            "keep it to numbers, strings, lists, dicts and tensors"
        ) from error
    state = {
        name: (tensor.half() if half and tensor.is_floating_point() else tensor).detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
    }
    payload = {
        "format": "course_utils.zfnet/1",
        "config": model.config.to_dict(),
        "state_dict": state,
        "sha256": tensors_sha256(state),
        "metadata": metadata,
    }
    with atomic_write(path) as stream:
        torch.save(payload, stream)
    return path


def load_checkpoint(path: str | os.PathLike, model: ZFNet | None = None) -> tuple[ZFNet, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns ``(model, metadata)`` with the model in eval mode and float32. When ``model`` is
    given its architecture must match the checkpoint's, otherwise :class:`CheckpointError`
    says how they differ.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}. Train one with `python -m course_utils.train` "
            "or check the path (shipped checkpoints live in data/checkpoints/)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a torch file
        raise CheckpointError(f"{path} is not a readable checkpoint ({error}); retrain or re-download it") from error
    if not isinstance(payload, dict) or payload.get("format") != "course_utils.zfnet/1":
        raise CheckpointError(
            f"{path} is not a course_utils ZFNet checkpoint (expected format 'course_utils.zfnet/1'). "
            "Torchvision models load through course_utils.models.alexnet/vgg16 instead."
        )
    missing = [key for key in ("config", "state_dict") if not isinstance(payload.get(key), dict)]
    if missing:
        raise CheckpointError(f"{path} is malformed: it has no {' or '.join(missing)}; retrain it")
    recorded = payload.get("sha256")
    if recorded is not None and recorded != tensors_sha256(payload["state_dict"]):
        raise CheckpointError(
            f"{path} is corrupt: its weights do not match their recorded SHA-256 (a changed or damaged file); "
            "retrain it or restore a good copy"
        )
    known = {field.name for field in dataclasses.fields(ZFNetConfig)}
    unknown = sorted(set(payload["config"]) - known)
    if unknown:
        raise CheckpointError(
            f"{path} has config keys this version does not know: {unknown}; it was written by another "
            "version of course_utils. Retrain it with this one."
        )
    try:
        config = ZFNetConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid config ({error}); retrain it") from error
    if model is None:
        model = ZFNet(config)
    elif getattr(model, "config", None) != config:
        theirs = config.to_dict()
        ours = model.config.to_dict() if hasattr(model, "config") else {}
        diff = {k: (ours.get(k), v) for k, v in theirs.items() if ours.get(k) != v}
        raise CheckpointError(
            f"checkpoint {path} holds another architecture; differences (model, checkpoint): "
            f"{diff}. Build the model with ZFNet(ZFNetConfig(**checkpoint config)) or call "
            "load_checkpoint(path) without a model."
        )
    state = {
        name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in payload["state_dict"].items()
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing or unexpected keys, shapes that disagree with the config
        reason = " ".join(str(error).split())
        raise CheckpointError(
            f"{path}: the weights do not fit the recorded architecture ({reason}); retrain it"
        ) from error
    model.eval()
    return model, payload.get("metadata", {})


#: The setting that names the course ZFNet trained on your photo folder (notebook 09).
PHOTO_MODEL_VARIABLE = "COURSE_PHOTO_MODEL"


def photo_model_checkpoint() -> Path:
    """The checkpoint of the course's ZFNet trained on your photos: ``$COURSE_PHOTO_MODEL``, or
    ``build/real_photos/final.pt`` of the repository (where ``python -m course_utils.train
    --dataset $COURSE_PHOTOS --out build/real_photos`` puts it). It may not exist."""
    setting = os.environ.get(PHOTO_MODEL_VARIABLE)
    return Path(setting).expanduser() if setting else DATA_DIR.parent / "build" / "real_photos" / "final.pt"


def load_shipped_model(name: str = "final") -> tuple[ZFNet, dict[str, Any]]:
    """Load a checkpoint shipped in ``data/checkpoints/`` (``"final"`` or ``"epoch_05"`` ...)."""
    path = CHECKPOINT_DIR / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
        raise CheckpointError(
            f"no shipped checkpoint {name!r} in {CHECKPOINT_DIR}; available: {available or 'none'}. "
            "Recreate them with `make checkpoints`."
        )
    return load_checkpoint(path)
