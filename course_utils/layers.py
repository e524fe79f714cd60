"""Walking a model: named layers, one observed forward pass, layer outputs.

Every analysis module (deconvnet, attribution, activations, invariance, occlusion, transfer)
looks inside a model through this module, with one set of rules:

* Models are *flat*: a :class:`~course_utils.models.NamedSequential` (or any module whose
  ``forward`` runs its named children in order), every layer a named child used once, so a
  layer has one name (``"conv5"``, ``"relu7"``) and one place.
* The forward pass is the model's own, observed through hooks that exist only during the call
  (removed in ``finally``). The hooks check that each child receives exactly what the previous
  child returned, so an operation hidden in ``forward()`` (``F.relu``, a reshape, a skip
  connection) raises an error instead of giving a wrong result; the pass stops right after the
  deepest layer needed.
* The model is analysed in eval mode and never changed: a model with any submodule in training
  mode is refused (:func:`~course_utils.checks.check_eval_mode`), nothing switches its mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_eval_mode, check_images

__all__ = [
    "Recording",
    "STANDARD_LAYERS",
    "check_standard_layers",
    "UnknownLayerError",
    "get_layer",
    "last_layer",
    "layer_names",
    "layer_outputs",
    "layer_path",
    "pair",
    "record_forward",
    "unit_values",
]


class UnknownLayerError(ValueError, KeyError):
    """A layer name the model does not have; the message lists the valid names. A ``ValueError``
    like every bad argument, and a ``KeyError`` like any failed lookup by name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def pair(value: int | Sequence[int]) -> tuple[int, int]:
    """A layer's kernel size, stride, padding or dilation (or an image size) as ``(h, w)``."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def layer_names(model: nn.Module) -> list[str]:
    """Names of a flat model's layers (its children) in forward order."""
    return [name for name, _ in model.named_children()]


def last_layer(model: nn.Module) -> str:
    """The name of a flat model's last layer (its output); a ``ValueError`` for a model without
    named children."""
    names = layer_names(model)
    if not names:
        raise ValueError(
            f"the {type(model).__name__} has no named layers: the course needs a flat model whose "
            "forward() runs its named children in order (a NamedSequential; wrap torchvision models "
            "with course_utils.models.alexnet()/vgg16())"
        )
    return names[-1]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the layer called ``name``; an :class:`UnknownLayerError` lists the valid names."""
    children = dict(model.named_children())
    if name not in children:
        raise UnknownLayerError(
            f"unknown layer {name!r}; this model's layers are: {', '.join(children)}. "
            "Address layers by these names (e.g. 'conv5', 'fc7')."
        )
    return children[name]


def layer_path(model: nn.Module, layer: str) -> list[tuple[str, nn.Module]]:
    """The model's children from the first one up to and including ``layer``, in forward order.

    Raises ``ValueError`` for an unknown layer (listing the valid names), a child module used
    at two places (hooks could not tell the places apart), or a container child on the path
    (the model is not flat).
    """
    children = list(model._modules.items())  # unlike named_children(), keeps reused modules
    names = [name for name, _ in children]
    seen: dict[int, str] = {}
    for name, module in children:
        if module is None:
            continue
        if id(module) in seen:
            raise ValueError(
                f"the same {type(module).__name__} module is used as layer {seen[id(module)]!r} "
                f"and as layer {name!r}; hooks cannot tell the two places apart. Give each "
                f"place its own module (e.g. nn.ReLU() per layer)."
            )
        seen[id(module)] = name
    if layer not in names:
        containers = [name for name, module in children if module is not None and len(module._modules)]
        hint = (
            f" Layers {containers} are containers: wrap torchvision models with "
            "course_utils.models.alexnet()/vgg16(), which name their layers flat."
            if containers
            else ""
        )
        raise UnknownLayerError(
            f"unknown layer {layer!r}; this model's layers are: {', '.join(names) or '(none)'}." + hint
        )
    path = children[: names.index(layer) + 1]
    for name, module in path:
        if module is None or len(module._modules):
            raise ValueError(
                f"layer {name!r} is a {type(module).__name__} container, not a single layer: the "
                "model must be flat (a NamedSequential of conv/relu/pool/... layers)."
            )
    return [(name, module) for name, module in path if module is not None]


@dataclass
class Recording:
    """What one observed forward pass left behind.

    Attributes:
        input_shapes: ``{name: shape}`` of the input of each layer on the path.
        switches: ``{name: (N, C, h, w) int64}`` argmax indices of each max-pool (when recorded).
        outputs: ``{name: tensor}`` the outputs kept, the path's last layer always among them.
        last: the name of the path's last layer.
    """

    input_shapes: dict[str, torch.Size] = field(default_factory=dict)
    switches: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    last: str = ""

    @property
    def output(self) -> Tensor:
        """The output of the path's last layer."""
        return self.outputs[self.last]


class _StopForward(Exception):
    """Raised by the hook of the path's last layer: nothing above it is needed."""


def _version(tensor: Tensor) -> int | None:
    """The tensor's in-place modification counter (``None`` for inference-mode tensors)."""
    return None if tensor.is_inference() else tensor._version


#: Layer types whose computation the course reproduces itself (the deconvnet's reverse pass,
#: attribution's ReLU rule, occlusion's incremental forward): a subclass must not change ``forward``.
STANDARD_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.Linear,
    nn.Flatten,
    nn.Dropout,
    nn.LocalResponseNorm,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm2d,
)


def check_standard_layers(path: list[tuple[str, nn.Module]]) -> None:
    """Refuse a layer on ``path`` whose class derives from one of :data:`STANDARD_LAYERS` but
    has a ``forward`` of its own: code that recomputes or reverses the layer from its type and
    weights would silently disagree with it."""
    for name, module in path:
        for base in STANDARD_LAYERS:
            if isinstance(module, base) and type(module).forward is not base.forward:
                raise ValueError(
                    f"layer {name!r} is a {type(module).__name__}, a subclass of nn.{base.__name__} with its own "
                    f"forward(); the course reverses and recomputes nn.{base.__name__} from its weights and would "
                    f"not follow that forward. Use a plain nn.{base.__name__} (or project from a layer below)."
                )


def _check_no_foreign_hooks(path: list[tuple[str, nn.Module]]) -> None:
    """Refuse forward hooks that someone else registered on the path (or globally): they change
    what the layers compute, and the course's reverse and incremental passes would not see it."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        raise ValueError(
            "global forward hooks are registered (torch.nn.modules.module.register_module_forward_hook); "
            "remove them before using the course's tools"
        )
    for name, module in path:
        if module._forward_hooks or module._forward_pre_hooks:
            raise ValueError(
                f"layer {name!r} has a forward hook or pre-hook registered by other code; it may change the "
                "layer's output, which the course's passes would not follow. Remove it (handle.remove()) first."
            )


def record_forward(
    model: nn.Module,
    images: Tensor,
    path: list[tuple[str, nn.Module]],
    *,
    keep: Sequence[str] = (),
    record_switches: bool = False,
    relu_replacement: Callable[[Tensor], Tensor] | None = None,
) -> Recording:
    """Run ``model(images)`` with hooks on the path's layers and stop after its last layer.

    Args:
        model: a flat model; ``path`` from :func:`layer_path`.
        images: the model's input.
        keep: names of layers on the path whose outputs are kept as well as the last one's
            (copied, so that a later in-place layer cannot change them).
        record_switches: record the argmax indices of every max-pool (the deconvnet's switches).
        relu_replacement: ``f(x)`` replaces the output of every ``nn.ReLU`` on the path
            (attribution uses it to change the ReLU's backward rule); in-place ReLUs then run
            on a copy so ``x`` is intact.

    The hooks check that every layer receives exactly the tensor the previous layer returned
    (the same object, not modified in place since: its version counter is unchanged).
    """
    if torch.is_inference_mode_enabled():
        raise ValueError(
            "called under torch.inference_mode(): in-place changes between layers cannot be detected "
            "there; call it outside inference mode (it runs without gradients where it can)"
        )
    _check_no_foreign_hooks(path)
    names = [name for name, _ in path]
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ValueError(f"layers {unknown} are not on the path {names}")
    recording = Recording(last=names[-1])
    previous: dict[str, Any] = {"name": "the input", "tensor": images, "version": _version(images)}
    relu_inputs: dict[str, Tensor] = {}
    running: list[str] = []  # the path layer whose forward is under way, if any

    def pre_hook(name: str, module: nn.Module, args: tuple[Any, ...]) -> tuple[Tensor] | None:
        position = len(recording.input_shapes)
        if position >= len(names) or names[position] != name:
            expected = names[position] if position < len(names) else "nothing more"
            raise ValueError(
                f"model.forward() ran layer {name!r} where {expected!r} was expected: the course "
                "needs a flat model whose forward() runs its named children in order."
            )
        received = args[0] if args else None
        if received is not previous["tensor"] or _version(received) != previous["version"]:
            raise ValueError(
                f"layer {name!r} does not receive the unchanged output of {previous['name']!r}: "
                "model.forward() does something between its layers (a functional ReLU such as "
                "F.relu, a reshape, a skip connection?). Make every operation a named child module "
                "(nn.ReLU(), nn.Flatten(), ...) of a flat NamedSequential."
            )
        recording.input_shapes[name] = received.shape
        running.append(name)
        if relu_replacement is not None and isinstance(module, nn.ReLU):
            relu_inputs[name] = received
            if module.inplace:
                return (received.clone(),)
        return None

    def post_hook(name: str, module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor | None:
        running.clear()
        replaced = None
        if relu_replacement is not None and isinstance(module, nn.ReLU):
            output = replaced = relu_replacement(relu_inputs.pop(name))
        if not isinstance(output, Tensor):
            raise ValueError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
        if record_switches and isinstance(module, nn.MaxPool2d):
            _, recording.switches[name] = F.max_pool2d(
                args[0],
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                ceil_mode=module.ceil_mode,
                return_indices=True,
            )
        if name == recording.last:
            recording.outputs[name] = output
            raise _StopForward
        if name in keep:
            recording.outputs[name] = output.detach().clone()
        previous.update(name=name, tensor=output, version=_version(output))
        return replaced

    handles = []
    try:
        for name, module in path:
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: pre_hook(n, m, a)))
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: post_hook(n, m, a, o)))
        try:
            model(images)
        except _StopForward:
            return recording
        except RuntimeError as error:
            if running:  # raised by the layer itself, e.g. an input smaller than its kernel
                shape = tuple(recording.input_shapes[running[0]])
                raise ValueError(f"layer {running[0]!r} failed on its input of shape {shape}: {error}") from error
            raise
        raise ValueError(
            f"model.forward() never ran layer {names[-1]!r}; the course needs a flat model "
            "whose forward() runs its named children in order."
        )
    finally:
        for handle in handles:
            handle.remove()


def layer_outputs(model: nn.Module, images: Tensor, layers: Sequence[str] | str) -> dict[str, Tensor]:
    """Outputs of the named layers for one batch, in one forward pass without gradients.

    Args:
        model: a flat model in eval mode (see the module docstring).
        images: ``(N, C, H, W)`` normalized float images (the model's channels, dtype, device).
        layers: layer names, e.g. ``["conv1", "relu7"]`` (or one name); the pass stops after
            the deepest.

    Returns:
        ``{name: tensor}`` in the order of ``layers``, each as the layer emits it
        (``(N, C, h, w)`` or ``(N, D)``), unaffected by later in-place layers.
    """
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("give at least one layer name, e.g. layers=['conv5']")
    check_eval_mode(model)
    check_images(model, images)
    paths = {name: layer_path(model, name) for name in names}
    deepest = max(names, key=lambda name: len(paths[name]))
    with torch.no_grad():
        recording = record_forward(model, images, paths[deepest], keep=names)
    return {name: recording.outputs[name] for name in names}


def unit_values(output: Tensor, rows: Tensor, selections: Tensor) -> Tensor:
    """``output[rows, channel, y, x]`` for each ``(image_index, channel, y, x)`` selection
    (``output[rows, channel]`` for vector outputs)."""
    if output.ndim == 4:
        return output[rows, selections[:, 1], selections[:, 2], selections[:, 3]]
    return output[rows, selections[:, 1]]
