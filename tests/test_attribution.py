"""Saliency, guided backprop and deconvnet as one backward pass; activation maximization."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_utils.attribution import _gaussian_blur, attribute, maximize_activation
from course_utils.deconvnet import project
from course_utils.layers import layer_outputs
from course_utils.models import NamedSequential, ZFNet, alexnet
from tests.conftest import hook_count

ATOL = 1e-5


@pytest.fixture(scope="module")
def zfnet():
    torch.manual_seed(0)
    # He-initialized conv1 (not the paper's std 0.01) so that activations have a trained net's scale
    return ZFNet(conv1_init_std=None).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def strongest_units(model, images, layer):
    """(image, channel, y, x) of each image's strongest unit in ``layer``: active, so non-zero."""
    output = layer_outputs(model, images, [layer])[layer]
    flat = output.flatten(1).argmax(dim=1)
    channel, position = flat // output[0, 0].numel(), flat % output[0, 0].numel()
    return torch.stack(
        [torch.arange(len(images)), channel, position // output.shape[-1], position % output.shape[-1]], 1
    )


SELECTIONS = {
    "conv2": torch.tensor([[0, 3, 5, 6], [2, 60, 15, 0], [0, 3, 5, 7]]),
    "pool2": torch.tensor([[1, 10, 4, 4], [2, 0, 0, 7]]),
    "relu5": None,  # the strongest unit of each image, see strongest_units
    "fc8": torch.tensor([[0, 4, 0, 0], [1, 9, 0, 0], [2, 4, 0, 0]]),
}


@pytest.fixture(scope="module")
def selections(zfnet, images):
    return {
        layer: strongest_units(zfnet, images, layer) if rows is None else rows for layer, rows in SELECTIONS.items()
    }


def plain_gradient(model, images, layer, selections):
    """torch.autograd.grad of each selected unit, through the model's own modules."""
    gradients = []
    for image_index, channel, y, x in selections.tolist():
        image = images[image_index : image_index + 1].clone().requires_grad_(True)
        activation = image
        for name, module in model.named_children():
            activation = module(activation)
            if name == layer:
                break
        unit = activation[0, channel, y, x] if activation.ndim == 4 else activation[0, channel]
        gradients.append(torch.autograd.grad(unit, image)[0][0])
    return torch.stack(gradients)


@pytest.mark.parametrize("layer", sorted(SELECTIONS))
def test_gradient_rule_equals_autograd(zfnet, images, selections, layer):
    ours = attribute(zfnet, images, layer, selections[layer], rule="gradient", unit_value="one")
    reference = plain_gradient(zfnet, images, layer, selections[layer])
    assert reference.abs().max() > 0
    assert (ours - reference).abs().max() <= ATOL
    assert hook_count(zfnet) == 0


def test_gradient_rule_differentiates_local_response_norm():
    torch.manual_seed(0)
    net = ZFNet(lcn=True).eval()
    images = torch.randn(2, 3, 64, 64)
    selections = torch.tensor([[0, 5, 4, 4], [1, 7, 2, 6]])
    assert (
        attribute(net, images, "conv3", selections, unit_value="one") - plain_gradient(net, images, "conv3", selections)
    ).abs().max() <= ATOL


@pytest.mark.parametrize("layer", sorted(SELECTIONS))
@pytest.mark.parametrize("unit_value", ["one", "activation"])
def test_deconvnet_rule_equals_the_explicit_deconvnet(zfnet, images, selections, layer, unit_value):
    ours = attribute(zfnet, images, layer, selections[layer], rule="deconvnet", unit_value=unit_value)
    explicit = project(zfnet, images, layer, selections[layer], unit_value=unit_value)
    assert explicit.abs().max() > 0
    assert (ours - explicit).abs().max() <= ATOL


def test_deconvnet_rule_equals_the_explicit_deconvnet_with_inplace_relus():
    torch.manual_seed(0)
    net = alexnet().eval()
    images = torch.randn(2, 3, 127, 127)
    selections = torch.tensor([[0, 8, 3, 3], [1, 200, 6, 1]])
    ours = attribute(net, images, "conv4", selections, rule="deconvnet", unit_value="one")
    assert (ours - project(net, images, "conv4", selections, unit_value="one")).abs().max() <= ATOL
    guided = attribute(net, images, "conv4", selections, rule="guided", unit_value="one")
    from captum.attr import NeuronGuidedBackprop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.cat(
            [
                NeuronGuidedBackprop(net, net._modules["conv4"]).attribute(images[i : i + 1], (c, y, x))
                for i, c, y, x in selections.tolist()
            ]
        )
    assert (guided - theirs).abs().max() <= ATOL
    assert all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    assert hook_count(net) == 0


def test_guided_rule_equals_captum_guided_backprop(zfnet, images):
    from captum.attr import GuidedBackprop, NeuronGuidedBackprop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        class_target = GuidedBackprop(zfnet).attribute(images, target=4)
        neuron = NeuronGuidedBackprop(zfnet, zfnet._modules["conv2"]).attribute(images[2:3], (60, 15, 0))
    ours_class = attribute(
        zfnet, images, "fc8", torch.tensor([[0, 4, 0, 0], [1, 4, 0, 0], [2, 4, 0, 0]]), rule="guided", unit_value="one"
    )
    assert class_target.abs().max() > 0
    assert (ours_class - class_target).abs().max() <= ATOL
    ours_neuron = attribute(zfnet, images, "conv2", torch.tensor([[2, 60, 15, 0]]), rule="guided", unit_value="one")
    assert (ours_neuron - neuron).abs().max() <= ATOL


def test_the_three_rules_give_three_different_pictures(zfnet, images, selections):
    gradient, guided, deconvnet = (
        attribute(zfnet, images, "relu5", selections["relu5"], rule=rule, unit_value="one")
        for rule in ("gradient", "guided", "deconvnet")
    )
    assert (gradient - guided).abs().max() > 1e-4
    assert (guided - deconvnet).abs().max() > 1e-4
    assert (gradient - deconvnet).abs().max() > 1e-4


def test_attribute_refuses_bad_input(zfnet, images):
    with pytest.raises(ValueError, match="unknown rule 'smooth'; use one of gradient, guided, deconvnet"):
        attribute(zfnet, images, "conv2", SELECTIONS["conv2"], rule="smooth")
    with pytest.raises(ValueError, match="channel 99 is out of range: layer 'conv2' has 64 channels"):
        attribute(zfnet, images, "conv2", torch.tensor([[0, 99, 0, 0]]))
    with pytest.raises(ValueError, match="unit_value"):
        attribute(zfnet, images, "conv2", SELECTIONS["conv2"], unit_value="half")

    class FunctionalReLUNet(NamedSequential):
        def forward(self, x):
            return self.conv2(self.relu1(torch.relu(self.conv1(x))))

    net = FunctionalReLUNet(
        OrderedDict([("conv1", nn.Conv2d(3, 2, 3)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(2, 2, 3))])
    ).eval()
    with pytest.raises(ValueError, match="functional ReLU"):
        attribute(net, torch.randn(1, 3, 9, 9), "conv2", torch.tensor([[0, 0, 0, 0]]))
    assert hook_count(net) == 0 and hook_count(zfnet) == 0


# --------------------------------------------------------------------------------------------
# Activation maximization
# --------------------------------------------------------------------------------------------


def test_maximize_activation_raises_the_activation_far_above_the_start(zfnet):
    result = maximize_activation(zfnet, "conv3", channel=5, steps=40, lr=0.1, seed=0, start_std=0.1)
    assert result.image.shape == (3, 64, 64)
    assert result.history.shape == (40,)
    assert result.final_activation > result.start_activation + 5 * abs(result.start_activation) + 1.0


def test_maximize_activation_is_seeded(zfnet):
    first = maximize_activation(zfnet, "relu2", 3, steps=5, seed=1)
    again = maximize_activation(zfnet, "relu2", 3, steps=5, seed=1)
    other = maximize_activation(zfnet, "relu2", 3, steps=5, seed=2)
    assert torch.equal(first.image, again.image)
    assert not torch.equal(first.image, other.image)


def test_maximize_activation_refuses_bad_arguments(zfnet):
    with pytest.raises(ValueError, match="steps >= 1"):
        maximize_activation(zfnet, "conv3", 0, steps=0)
    with pytest.raises(ValueError, match="start_std > 0"):
        maximize_activation(zfnet, "conv3", 0, steps=1, start_std=0.0)
    with pytest.raises(ValueError, match="channel 500 is out of range"):
        maximize_activation(zfnet, "conv3", 500, steps=1)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        maximize_activation(zfnet, "conv9", 0, steps=1)
    assert hook_count(zfnet) == 0


def test_gaussian_blur_keeps_constants_and_total_brightness_in_the_interior():
    constant = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(_gaussian_blur(constant, 1.0), constant)
    impulse = torch.zeros(1, 1, 11, 11)
    impulse[0, 0, 5, 5] = 1.0
    blurred = _gaussian_blur(impulse, 1.0)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0))
    assert torch.equal(blurred[0, 0], blurred[0, 0].T) and float(blurred[0, 0, 5, 5]) == float(blurred.max())
