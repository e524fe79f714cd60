"""Comparison methods: saliency, guided backprop, deconvnet as one backward pass, and
activation maximization.

Simonyan et al. (2013) and Springenberg et al. (2014) observed that the three best-known
"projection" methods are the same backward pass through a convnet except for the rule used at
every ReLU. With ``x`` the ReLU's forward input and ``g`` the signal coming from above:

=============  ==============================  ==========================
rule           signal passed down              method
=============  ==============================  ==========================
``gradient``   ``g * (x > 0)``                 saliency (plain gradient)
``guided``     ``relu(g) * (x > 0)``           guided backpropagation
``deconvnet``  ``relu(g)``                     Zeiler & Fergus deconvnet
=============  ==============================  ==========================

:func:`attribute` runs that pass with autograd: during the call, hooks replace the output of
every ``nn.ReLU`` on the path by a ReLU whose backward applies the chosen rule (in-place ReLUs
run on a copy), everything else is differentiated as usual. It is independent of
:mod:`course_utils.deconvnet`'s explicit switches and transposed filters; the two agree
exactly on models without ``LocalResponseNorm`` (the deconvnet passes normalization through
as the identity, backpropagation differentiates it).

:func:`maximize_activation` is the other classic picture of a feature (Chollet's "filter
patterns"): gradient ascent on the input image, regularized by L2 decay, random jitter and
occasional blurring.

:func:`project_mean_unpooling` is the deconvnet with the max-pool switches replaced by *mean
unpooling* (every pooled value spread evenly over its whole pooling window, :func:`mean_unpool`):
the blurred alternative the paper contrasts with (notebook 02). Without switches nothing in the
reverse pass depends on the image any more, so one unit gives the same picture in every image.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_eval_mode, check_units
from .deconvnet import UnitValue, check_reversible, check_selection_call
from .layers import layer_path, record_forward, unit_values
from .progress import progress_bar

__all__ = ["RULES", "MaximizedActivation", "attribute", "maximize_activation", "mean_unpool", "project_mean_unpooling"]

Rule = Literal["gradient", "guided", "deconvnet"]
#: The ReLU backward rules of :func:`attribute`.
RULES: tuple[str, ...] = ("gradient", "guided", "deconvnet")


class _RuleReLU(torch.autograd.Function):
    """``relu(x)`` forward; backward by one of :data:`RULES`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, rule: str) -> Tensor:
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconvnet":
            return grad.clamp(min=0), None
        if ctx.rule == "guided":
            grad = grad.clamp(min=0)
        return grad * (x > 0), None


def attribute(
    model: nn.Module,
    images: Tensor,
    layer: str,
    selections: Tensor,
    *,
    rule: Rule = "gradient",
    unit_value: UnitValue = "activation",
    batch_size: int = 64,
) -> Tensor:
    """Backward pass from selected units of ``layer`` to the input, with a ReLU ``rule``.

    Args:
        model: a flat model in eval mode (same requirements as :func:`course_utils.deconvnet.project`).
        images: ``(N, 3, H, W)`` normalized float images.
        layer: the layer whose units are selected (``"conv5"``, ``"fc8"``...).
        selections: ``(S, 4)`` integer rows ``(image_index, channel, y, x)`` (``y = x = 0``
            for vector layers).
        rule: ``"gradient"`` (saliency), ``"guided"`` (guided backprop) or ``"deconvnet"``.
        unit_value: the seed at the selected unit: ``"one"`` (the gradient convention) or its
            ``"activation"``.
        batch_size: selections per forward/backward pass (each selection runs on its own copy
            of its image).

    Returns:
        ``(S, 3, H, W)`` attributions in input space.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    path, selections = check_selection_call(model, images, layer, selections, unit_value)
    attributions = images.new_zeros(len(selections), *images.shape[1:])

    def rule_relu(x: Tensor) -> Tensor:
        return _RuleReLU.apply(x, rule)

    for start in range(0, len(selections), batch_size):
        chosen = selections[start : start + batch_size].to(images.device)
        inputs = images.detach()[chosen[:, 0]].requires_grad_(True)
        with torch.enable_grad():
            output = record_forward(model, inputs, path, relu_replacement=rule_relu).output
            if start == 0:
                check_units(layer, output.shape, selections)
            values = unit_values(output, torch.arange(len(chosen), device=output.device), chosen)
            seed = values.detach() if unit_value == "activation" else torch.ones_like(values)
            (gradient,) = torch.autograd.grad(values, inputs, grad_outputs=seed)
        attributions[start : start + len(chosen)] = gradient
    return attributions


# --------------------------------------------------------------------------------------------
# Activation maximization
# --------------------------------------------------------------------------------------------


@dataclass
class MaximizedActivation:
    """Result of :func:`maximize_activation`.

    Attributes:
        image: ``(3, H, W)`` the optimized input, in the model's normalized input space.
        start_activation: the objective at the random starting image.
        final_activation: the objective at ``image``.
        history: ``(steps,)`` the objective at each step (on the jittered image).
    """

    image: Tensor
    start_activation: float
    final_activation: float
    history: Tensor


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Blur ``(N, C, H, W)`` with a separable Gaussian of standard deviation ``sigma`` pixels."""
    radius = max(1, math.ceil(2 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


def maximize_activation(
    model: nn.Module,
    layer: str,
    channel: int,
    steps: int = 100,
    lr: float = 0.1,
    seed: int = 0,
    image_size: int = 64,
    *,
    l2_decay: float = 1e-3,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    start_std: float = 0.5,
    progress: bool = True,
) -> MaximizedActivation:
    """Synthesize an input that excites ``channel`` of ``layer`` strongly (gradient ascent).

    Starting from Gaussian noise of standard deviation ``start_std`` (seeded; half the contrast of
    a normalized image: faint noise leaves many ReLUs closed everywhere, and a map with no open
    path to the input cannot be raised), each step shifts the image by a random
    ``jitter`` (up to that many pixels), takes the gradient of the objective (the channel's mean
    activation over its map, or the unit for vector layers), steps ``lr`` along the gradient
    normalized to unit RMS, shrinks the image by ``1 - l2_decay`` and, every ``blur_every``
    steps, blurs it (``blur_every=0`` never blurs). Same seed, same image.

    Returns:
        :class:`MaximizedActivation` with the ``(3, image_size, image_size)`` image.
    """
    if steps < 1 or lr <= 0 or image_size < 1 or jitter < 0 or not 0 <= l2_decay < 1 or not start_std > 0:
        raise ValueError(
            f"need steps >= 1, lr > 0, image_size >= 1, jitter >= 0, 0 <= l2_decay < 1 and start_std > 0; got "
            f"steps={steps}, lr={lr}, image_size={image_size}, jitter={jitter}, l2_decay={l2_decay}, "
            f"start_std={start_std}"
        )
    check_eval_mode(model)
    path = layer_path(model, layer)
    parameter = next(model.parameters())
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    generator = torch.Generator().manual_seed(seed)
    image = start_std * torch.randn(1, channels, image_size, image_size, generator=generator)
    image = image.to(device=parameter.device, dtype=parameter.dtype)

    def objective(inputs: Tensor) -> Tensor:
        output = record_forward(model, inputs, path).output
        check_units(layer, output.shape, torch.tensor([[0, channel, 0, 0]]))
        return output[0, channel].mean()

    with torch.no_grad():
        start_activation = float(objective(image))
    history = []
    for step in progress_bar(range(steps), desc=f"maximizing {layer}[{channel}]", progress=progress):
        shift = [int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator)]
        shifted = torch.roll(image, shift, dims=(2, 3)).requires_grad_(True)
        with torch.enable_grad():
            value = objective(shifted)
            (gradient,) = torch.autograd.grad(value, shifted)
        history.append(float(value.detach()))
        gradient = torch.roll(gradient, [-s for s in shift], dims=(2, 3))
        with torch.no_grad():
            image = image + lr * gradient / (gradient.pow(2).mean().sqrt() + 1e-8)
            image = image * (1 - l2_decay)
            if blur_every and (step + 1) % blur_every == 0:
                image = _gaussian_blur(image, blur_sigma)
    with torch.no_grad():
        final_activation = float(objective(image))
    return MaximizedActivation(image[0], start_activation, final_activation, torch.tensor(history))


# --------------------------------------------------------------------------------------------
# Mean unpooling: the blurred alternative to switches
# --------------------------------------------------------------------------------------------


def mean_unpool(signal: Tensor, pool: nn.MaxPool2d, output_size: Sequence[int]) -> Tensor:
    """Spread every value of ``signal`` evenly over its whole pooling window.

    Args:
        signal: ``(N, C, h, w)`` values at the pooled positions.
        pool: the forward max-pool (kernel size, stride, padding, ceil mode are used).
        output_size: ``(H, W)`` of the pooling layer's input.

    Returns:
        ``(N, C, H, W)``: each input position receives ``value / (kernel_h * kernel_w)`` from every
        window that contains it (summed where windows overlap), the transpose of average pooling.
        Unlike :func:`~course_utils.deconvnet.unpool` it needs no switches, and it blurs.
    """
    dilation = pool.dilation if isinstance(pool.dilation, int) else max(pool.dilation)
    if dilation != 1:
        raise ValueError(f"mean unpooling supports max-pools without dilation, got dilation={pool.dilation}")
    if signal.ndim != 4:
        raise ValueError(f"signal must be (N, C, h, w), got {tuple(signal.shape)}")
    with torch.enable_grad():
        canvas = signal.new_zeros(*signal.shape[:2], *(int(s) for s in output_size)).requires_grad_(True)
        pooled = F.avg_pool2d(
            canvas, pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode, count_include_pad=True
        )
        if pooled.shape != signal.shape:
            raise ValueError(
                f"a {tuple(output_size)} input pools to {tuple(pooled.shape[-2:])}, but signal is "
                f"{tuple(signal.shape[-2:])}; give the pooling layer's input size"
            )
        (spread,) = torch.autograd.grad(pooled, canvas, signal.detach())
    return spread


class _MaxForwardMeanBackward(torch.autograd.Function):
    """Max-pooling forward; backward by :func:`mean_unpool` instead of the switches."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, pool: nn.MaxPool2d) -> Tensor:
        ctx.pool, ctx.input_size = pool, x.shape[-2:]
        return F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return mean_unpool(grad, ctx.pool, ctx.input_size), None


class _MeanUnpoolingMaxPool(nn.Module):
    """A max-pool (the wrapped one's settings) whose backward is :func:`mean_unpool`; not an
    ``nn.MaxPool2d`` subclass, so nothing mistakes it for a plain max-pool."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__()
        self.settings = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, False, pool.ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        return _MaxForwardMeanBackward.apply(x, nn.MaxPool2d(*self.settings))


def project_mean_unpooling(
    model: nn.Module, images: Tensor, layer: str, selections: Tensor, *, unit_value: UnitValue = "activation"
) -> Tensor:
    """The deconvnet with *mean unpooling* instead of switches: ``(S, 3, H, W)``.

    Same arguments as :func:`course_utils.deconvnet.project`. The reverse pass is the
    deconvnet rule of :func:`course_utils.attribution.attribute` (rectify, transposed filters)
    on a view of the model's layers up to ``layer`` in which every max-pool's backward is
    :func:`mean_unpool`; the forward pass (and so the selected activation) is unchanged. The
    model itself is not modified. On models without ``LocalResponseNorm`` this differs from
    ``project`` only in the unpooling.
    """
    check_eval_mode(model)
    path = layer_path(model, layer)
    check_reversible(path)
    view = nn.Sequential(
        OrderedDict(
            (name, _MeanUnpoolingMaxPool(module) if isinstance(module, nn.MaxPool2d) else module)
            for name, module in path
        )
    )
    for module in (view, *(m for m in view.children() if isinstance(m, _MeanUnpoolingMaxPool))):
        module.training = False  # not view.eval(): the model's own layers keep their flags
    return attribute(view, images, layer, selections, rule="deconvnet", unit_value=unit_value)
