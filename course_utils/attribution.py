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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .deconvnet import (
    UnitValue,
    _check_selections,
    _check_units,
    _record_forward,
    _unit_values,
    check_eval_mode,
    check_images,
    layer_path,
)

__all__ = ["RULES", "attribute", "MaximizedActivation", "maximize_activation"]

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
    rule: Rule = "gradient",
    *,
    unit_value: UnitValue = "one",
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
    if unit_value not in ("activation", "one"):
        raise ValueError(f"unit_value must be 'activation' or 'one', got {unit_value!r}")
    check_eval_mode(model)
    check_images(model, images)
    path = layer_path(model, layer)
    selections = _check_selections(selections, images.shape[0])
    attributions = images.new_zeros(len(selections), *images.shape[1:])

    def rule_relu(x: Tensor) -> Tensor:
        return _RuleReLU.apply(x, rule)

    for start in range(0, len(selections), batch_size):
        chosen = selections[start: start + batch_size].to(images.device)
        inputs = images.detach()[chosen[:, 0]].requires_grad_(True)
        with torch.enable_grad():
            output = _record_forward(model, inputs, path, relu_replacement=rule_relu).output
            if start == 0:
                _check_units(layer, output.shape, selections)
            values = _unit_values(output, torch.arange(len(chosen), device=output.device), chosen)
            seed = values.detach() if unit_value == "activation" else torch.ones_like(values)
            (gradient,) = torch.autograd.grad(values, inputs, grad_outputs=seed)
        attributions[start: start + len(chosen)] = gradient
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
    progress: bool = False,
) -> MaximizedActivation:
    """Synthesize an input that excites ``channel`` of ``layer`` strongly (gradient ascent).

    Starting from small Gaussian noise (seeded), each step shifts the image by a random
    ``jitter`` (up to that many pixels), takes the gradient of the objective (the channel's mean
    activation over its map, or the unit for vector layers), steps ``lr`` along the gradient
    normalized to unit RMS, shrinks the image by ``1 - l2_decay`` and, every ``blur_every``
    steps, blurs it (``blur_every=0`` never blurs). Same seed, same image.

    Returns:
        :class:`MaximizedActivation` with the ``(3, image_size, image_size)`` image.
    """
    if steps < 1 or lr <= 0 or image_size < 1 or jitter < 0 or not 0 <= l2_decay < 1:
        raise ValueError(
            f"need steps >= 1, lr > 0, image_size >= 1, jitter >= 0 and 0 <= l2_decay < 1; got "
            f"steps={steps}, lr={lr}, image_size={image_size}, jitter={jitter}, l2_decay={l2_decay}"
        )
    check_eval_mode(model)
    path = layer_path(model, layer)
    parameter = next(model.parameters())
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first_conv.in_channels if first_conv is not None else 3
    generator = torch.Generator().manual_seed(seed)
    image = 0.1 * torch.randn(1, channels, image_size, image_size, generator=generator)
    image = image.to(device=parameter.device, dtype=parameter.dtype)

    def objective(inputs: Tensor) -> Tensor:
        output = _record_forward(model, inputs, path).output
        _check_units(layer, output.shape, torch.tensor([[0, channel, 0, 0]]))
        return output[0, channel].mean()

    with torch.no_grad():
        start_activation = float(objective(image))
    history = []
    for step in tqdm(range(steps), desc=f"maximizing {layer}[{channel}]", disable=not progress):
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
