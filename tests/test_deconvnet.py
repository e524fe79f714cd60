"""The deconvnet (course_utils.deconvnet) against independent computations.

References used here, all written in this file:
* autograd on a deep copy of the model whose ReLUs are replaced by a ReLU with backward
  ``relu(grad_out)`` (the deconvnet rule), one selection at a time;
* Captum's NeuronDeconvolution;
* nn.MaxUnpool2d and explicit index arithmetic for unpooling;
* a 4x4 example computed by hand.
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import deconvnet
from course_utils.deconvnet import (
    filter_transposed,
    project,
    project_activation,
    project_top_activations,
    unpool,
)
from course_utils.layers import layer_outputs
from course_utils.models import NamedSequential, ZFNet, alexnet
from tests.conftest import hook_count

ATOL = 1e-5


# --------------------------------------------------------------------------------------------
# Independent reference: autograd with the ReLU backward replaced, on a copy of the model
# --------------------------------------------------------------------------------------------


class _DeconvReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_out):
        return grad_out.clamp(min=0)


class _DeconvReLU(nn.Module):
    def forward(self, x):
        return _DeconvReLUFunction.apply(x)


def deconv_reference(model, images, layer, selections, unit_value="one"):
    """Per selection: autograd from the unit to the input, ReLU backward = relu(grad_out)."""
    reference = copy.deepcopy(model)
    for name, module in list(reference._modules.items()):
        if isinstance(module, nn.ReLU):
            reference._modules[name] = _DeconvReLU()
    results = []
    for image_index, channel, y, x in selections.tolist():
        image = images[image_index : image_index + 1].clone().requires_grad_(True)
        activation = image
        for name, module in reference._modules.items():
            activation = module(activation)
            if name == layer:
                break
        unit = activation[0, channel, y, x] if activation.ndim == 4 else activation[0, channel]
        seed = unit.detach() if unit_value == "activation" else torch.ones_like(unit)
        (gradient,) = torch.autograd.grad(unit, image, grad_outputs=seed)
        results.append(gradient[0])
    return torch.stack(results)


def random_selections(model, images, layer, count, seed):
    """``count`` random (image, channel, y, x) rows valid for ``layer``."""
    output = layer_outputs(model, images, [layer])[layer]
    generator = torch.Generator().manual_seed(seed)
    height, width = output.shape[2:] if output.ndim == 4 else (1, 1)
    columns = [len(images), output.shape[1], height, width]
    return torch.stack([torch.randint(0, n, (count,), generator=generator) for n in columns], dim=1)


def overlapping_net():
    """A tiny net with overlapping 3x3/2 max-pools (one padded), odd sizes, a strided conv."""
    torch.manual_seed(3)
    return NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 4, 5, stride=2, padding=2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
                ("conv2", nn.Conv2d(4, 6, 3, padding=1, dilation=1)),
                ("relu2", nn.ReLU()),
                ("pool2", nn.MaxPool2d(3, stride=2)),
                ("conv3", nn.Conv2d(6, 5, 2, dilation=2)),
                ("relu3", nn.ReLU()),
            ]
        )
    ).eval()


@pytest.fixture(scope="module")
def zfnet():
    torch.manual_seed(0)
    return ZFNet().eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def alexnet_model():
    torch.manual_seed(0)
    return alexnet().eval()


# --------------------------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, unit_value",
    [
        ("conv1", "one"),
        ("relu1", "activation"),
        ("pool1", "activation"),
        ("conv2", "one"),
        ("pool2", "activation"),
        ("relu3", "activation"),
        ("conv5", "one"),
        ("pool5", "activation"),
        ("fc6", "one"),
        ("fc8", "activation"),
    ],
)
def test_project_equals_modified_relu_autograd_on_zfnet(zfnet, images, layer, unit_value):
    selections = random_selections(zfnet, images, layer, count=4, seed=len(layer))
    ours = project(zfnet, images, layer, selections, unit_value=unit_value)
    reference = deconv_reference(zfnet, images, layer, selections, unit_value)
    assert ours.shape == (4, 3, 64, 64)
    assert reference.abs().max() > 0
    assert (ours - reference).abs().max() <= ATOL


@pytest.mark.parametrize(
    "size, layer",
    [
        ((37, 41), "pool1"),
        ((40, 40), "conv2"),
        ((29, 35), "pool2"),
        ((37, 41), "relu3"),
        ((40, 40), "relu3"),
        ((29, 35), "relu3"),
    ],
)
def test_project_equals_autograd_on_overlapping_pools_and_odd_sizes(size, layer):
    net = overlapping_net()
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    selections = random_selections(net, images, layer, count=4, seed=7)
    ours = project(net, images, layer, selections, unit_value="activation")
    reference = deconv_reference(net, images, layer, selections, "activation")
    assert ours.shape == (4, 3, *size)
    assert (ours - reference).abs().max() <= ATOL


def test_project_equals_autograd_on_alexnet_at_224_with_inplace_relus(alexnet_model):
    assert all(m.inplace for m in alexnet_model.modules() if isinstance(m, nn.ReLU))
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    output = layer_outputs(alexnet_model, image, ["conv5"])["conv5"]
    flat = int(output[0, 17].argmin())  # a negative pre-ReLU unit: the value must be conv5's own
    selection = torch.tensor([[0, 17, flat // output.shape[-1], flat % output.shape[-1]]])
    assert output[0, 17].min() < 0
    ours = project(alexnet_model, image, "conv5", selection, unit_value="activation")
    reference = deconv_reference(alexnet_model, image, "conv5", selection, "activation")
    assert (ours - reference).abs().max() <= ATOL
    assert reference.abs().max() > 0
    assert all(m.inplace for m in alexnet_model.modules() if isinstance(m, nn.ReLU))
    assert hook_count(alexnet_model) == 0


def shared_argmax_net():
    """1x1 identity conv, ReLU, 3x3/2 pool, then a 2x2 conv with weights [[1, 2], [3, 4]]."""
    net = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 1, 1)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, stride=2)),
                ("conv2", nn.Conv2d(1, 1, 2)),
            ]
        )
    ).eval()
    first_conv, second_conv = net._modules["conv1"], net._modules["conv2"]
    with torch.no_grad():
        first_conv.weight.fill_(1.0)
        first_conv.bias.zero_()
        second_conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        second_conv.bias.zero_()
    return net


def test_windows_sharing_an_argmax_add_their_contributions():
    # 5x5 input, 3x3/2 pooling -> 2x2 windows that all contain the centre (2, 2), where the
    # input is largest: all four switches point there.
    net = shared_argmax_net()
    image = 0.1 * torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    image[0, 0, 2, 2] = 5.0
    _, switches = F.max_pool2d(image, 3, 2, return_indices=True)
    assert switches.flatten().tolist() == [12, 12, 12, 12]
    selection = torch.tensor([[0, 0, 0, 0]])
    ours = project(net, image, "conv2", selection, unit_value="one")
    # Hand computation: conv2 transposed spreads 1 into [[1, 2], [3, 4]] at the pool's 2x2
    # output; all four go back to (2, 2) and add up to 10; ReLU keeps 10; the 1x1 identity
    # conv keeps it.
    expected = torch.zeros(1, 1, 5, 5)
    expected[0, 0, 2, 2] = 10.0
    assert torch.equal(ours, expected)
    assert torch.equal(deconv_reference(net, image, "conv2", selection), expected)
    # nn.MaxUnpool2d overwrites instead of adding: only one of the four values survives.
    overwritten = nn.MaxUnpool2d(3, stride=2)(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), switches, output_size=(5, 5))
    assert float(overwritten[0, 0, 2, 2]) in (1.0, 2.0, 3.0, 4.0)


def hand_example_net():
    """conv1 2x2 [[1, 2], [0, -1]] -> ReLU -> 3x3/2 pool (padding 1) -> conv2 2x2 [[1, -1], [2, 1]] + 1."""
    net = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 1, 2)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
                ("conv2", nn.Conv2d(1, 1, 2)),
            ]
        )
    ).eval()
    with torch.no_grad():
        net._modules["conv1"].weight.copy_(torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]]))
        net._modules["conv1"].bias.zero_()
        net._modules["conv2"].weight.copy_(torch.tensor([[[[1.0, -1.0], [2.0, 1.0]]]]))
        net._modules["conv2"].bias.fill_(1.0)
    return net


def test_whole_reverse_pass_on_a_hand_computed_example():
    net = hand_example_net()
    image = torch.tensor([[[[1.0, 0.0, 5.0, 3.0], [5.0, 4.0, 0.0, 2.0], [4.0, 0.0, 4.0, 5.0], [2.0, 2.0, 3.0, 4.0]]]])
    # Forward, by hand. conv1: c[i, j] = x[i, j] + 2 x[i, j+1] - x[i+1, j+1]
    #   c = [[-3, 10, 9], [13, 0, -1], [2, 5, 10]];  relu: [[0, 10, 9], [13, 0, 0], [2, 5, 10]]
    # pool 3x3/2, padding 1, windows (rows, cols): (0-1, 0-1) max 13 at (1, 0); (0-1, 1-2) max
    #   10 at (0, 1); (1-2, 0-1) max 13 at (1, 0) (the same switch); (1-2, 1-2) max 10 at (2, 2)
    #   -> p = [[13, 10], [13, 10]]
    # conv2: 13*1 + 10*(-1) + 13*2 + 10*1 + bias 1 = 40.
    assert float(layer_outputs(net, image, ["conv2"])["conv2"]) == 40.0
    # Reverse, unit value 1. conv2 transposed: [[1, -1], [2, 1]] on the pool grid.
    # unpool: (1, 0) gets 1 + 2 = 3, (0, 1) gets -1, (2, 2) gets 1:
    #   [[0, -1, 0], [3, 0, 0], [0, 0, 1]];  rectify: [[0, 0, 0], [3, 0, 0], [0, 0, 1]]
    # conv1 transposed (out[i+a, j+b] += r[i, j] * w[a, b], w = [[1, 2], [0, -1]]):
    #   r[1, 0] = 3 -> (1, 0) += 3, (1, 1) += 6, (2, 1) += -3;  r[2, 2] = 1 -> (2, 2) += 1,
    #   (2, 3) += 2, (3, 3) += -1.  No bias anywhere on the way down.
    expected = torch.tensor(
        [[[[0.0, 0.0, 0.0, 0.0], [3.0, 6.0, 0.0, 0.0], [0.0, -3.0, 1.0, 2.0], [0.0, 0.0, 0.0, -1.0]]]]
    )
    selection = torch.tensor([[0, 0, 0, 0]])
    assert torch.equal(project(net, image, "conv2", selection, unit_value="one"), expected[0:1])
    # With the activation (40) as the unit value, as in the paper: 40 times the same.
    assert torch.equal(project(net, image, "conv2", selection), 40.0 * expected)
    # Projecting the pool unit (0, 1) (value 10) only unpools to (0, 1), rectifies, filters.
    pool_projection = project(net, image, "pool1", torch.tensor([[0, 0, 0, 1]]), unit_value="one")
    assert torch.equal(
        pool_projection[0, 0],
        torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
    )


@pytest.mark.parametrize("layer", ["conv2", "pool2", "conv5", "fc7"])
def test_project_equals_captum_neuron_deconvolution(zfnet, images, layer):
    from captum.attr import NeuronDeconvolution

    selections = random_selections(zfnet, images, layer, count=3, seed=11)
    ours = project(zfnet, images, layer, selections, unit_value="one")
    deconvolution = NeuronDeconvolution(zfnet, zfnet._modules[layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.cat(
            [
                deconvolution.attribute(images[i : i + 1], neuron_selector=(c,) if layer == "fc7" else (c, y, x))
                for i, c, y, x in selections.tolist()
            ]
        )
    assert theirs.abs().max() > 0
    assert (ours - theirs).abs().max() <= ATOL


def test_project_equals_captum_on_alexnet_at_224(alexnet_model):
    from captum.attr import NeuronDeconvolution

    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    ours = project(alexnet_model, image, "pool5", torch.tensor([[0, 100, 3, 2]]), unit_value="one")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = NeuronDeconvolution(alexnet_model, alexnet_model._modules["pool5"]).attribute(
            image, neuron_selector=(100, 3, 2)
        )
    assert theirs.abs().max() > 0
    assert (ours - theirs).abs().max() <= ATOL
    assert hook_count(alexnet_model) == 0


def test_batchnorm_goes_back_through_its_scale():
    torch.manual_seed(4)
    net = NamedSequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(3, 5, 3, padding=1)),
                ("bn1", nn.BatchNorm2d(5)),
                ("relu1", nn.ReLU()),
                ("pool1", nn.MaxPool2d(3, 2, 1)),
                ("conv2", nn.Conv2d(5, 4, 3)),
            ]
        )
    )
    batchnorm = net._modules["bn1"]
    with torch.no_grad():
        batchnorm.running_mean.normal_()
        batchnorm.running_var.uniform_(0.5, 2.0)
        batchnorm.weight.normal_()
        batchnorm.bias.normal_()
    net.eval()
    images = torch.randn(2, 3, 16, 16)
    selections = torch.tensor([[0, 1, 2, 3], [1, 3, 0, 0]])
    assert (
        project(net, images, "conv2", selections) - deconv_reference(net, images, "conv2", selections, "activation")
    ).abs().max() <= ATOL


def test_local_response_norm_passes_through_as_identity():
    torch.manual_seed(0)
    net = ZFNet(lcn=True, conv1_init_std=None).eval()  # He-initialized: activations large enough to normalize
    images = torch.randn(2, 3, 64, 64)
    selections = torch.tensor([[0, 3, 4, 5], [1, 20, 7, 0]])
    through_norm = project(net, images, "norm1", selections, unit_value="one")
    below_norm = project(net, images, "pool1", selections, unit_value="one")
    assert torch.equal(through_norm, below_norm)
    # ...which is the deconvnet's choice, not the gradient of the normalization:
    gradient_through_norm = deconv_reference(net, images, "norm1", selections)
    assert (gradient_through_norm - through_norm).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------
# The reverse operations on their own
# --------------------------------------------------------------------------------------------


def test_unpool_equals_max_unpool_for_non_overlapping_windows():
    x = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    pooled, switches = F.max_pool2d(x, 2, 2, return_indices=True)
    signal = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(unpool(signal, switches, (8, 10)), nn.MaxUnpool2d(2, 2)(signal, switches, output_size=(8, 10)))


def test_unpool_places_values_at_argmax_and_adds_shared_ones():
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    pooled, switches = F.max_pool2d(x, 3, 2, padding=1, return_indices=True)
    unpooled = unpool(pooled, switches, (9, 11))
    # Index arithmetic, one value at a time.
    expected = torch.zeros_like(x)
    for n, c, i, j in torch.cartesian_prod(*(torch.arange(s) for s in pooled.shape)).tolist():
        flat = int(switches[n, c, i, j])
        expected[n, c, flat // 11, flat % 11] += pooled[n, c, i, j]
    assert torch.equal(unpooled, expected)
    # Each switch position received its input value once per window that chose it.
    chosen = (
        torch.zeros_like(x)
        .flatten(2)
        .scatter_add_(2, switches.flatten(2), torch.ones_like(pooled).flatten(2))
        .view_as(x)
    )
    assert torch.allclose(unpooled[chosen > 0], (x * chosen)[chosen > 0])
    assert (chosen > 1).any(), "overlapping 3x3/2 windows should share some maxima"
    # Where no switch is shared, nn.MaxUnpool2d agrees.
    max_unpooled = nn.MaxUnpool2d(3, 2, padding=1)(pooled, switches, output_size=(9, 11))
    assert torch.equal(unpooled[chosen == 1], max_unpooled[chosen == 1])


def test_unpool_rejects_mismatched_switches():
    with pytest.raises(ValueError, match="same shape"):
        unpool(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 2, dtype=torch.long), (6, 6))
    with pytest.raises(ValueError, match="int64"):
        unpool(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3, dtype=torch.int32), (6, 6))


@pytest.mark.parametrize("input_size", [7, 8, 9, 10])
def test_filter_transposed_is_the_convolutions_adjoint_at_the_exact_input_size(input_size):
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1)
    x = torch.randn(1, 2, input_size, input_size, requires_grad=True)
    output = conv(x)
    signal = torch.randn(output.shape)
    (gradient,) = torch.autograd.grad(output, x, grad_outputs=signal)
    with torch.no_grad():
        transposed = filter_transposed(signal, conv, (input_size, input_size))
    assert transposed.shape == x.shape
    assert (transposed - gradient).abs().max() <= ATOL


# --------------------------------------------------------------------------------------------
# Batching and conveniences
# --------------------------------------------------------------------------------------------


def test_batching_runs_one_forward_per_distinct_image_and_keeps_order(zfnet, images, monkeypatch):
    selections = torch.tensor([[2, 5, 1, 1], [0, 7, 3, 3], [2, 9, 0, 7], [0, 7, 3, 3], [1, 1, 4, 4]])
    seen_batch_sizes = []
    observed = deconvnet.record_forward

    def counting(model, batch, *args, **kwargs):
        seen_batch_sizes.append(batch.shape[0])
        return observed(model, batch, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(deconvnet, "record_forward", counting)
        together = project(zfnet, images, "conv5", selections)
    assert sum(seen_batch_sizes) == 3  # three distinct images, each run once
    one_by_one = torch.cat([project(zfnet, images, "conv5", row[None]) for row in selections])
    assert (together - one_by_one).abs().max() <= ATOL
    in_small_chunks = project(zfnet, images, "conv5", selections, batch_size=1)
    assert (together - in_small_chunks).abs().max() <= ATOL
    monkeypatch.setattr("course_utils.deconvnet.REVERSE_PASS_BYTES", 1)  # one selection per reverse pass
    under_memory_cap = project(zfnet, images, "conv5", selections)
    assert (together - under_memory_cap).abs().max() <= ATOL
    assert torch.equal(together[1], together[3])
    assert project(zfnet, images, "conv5", torch.zeros(0, 4, dtype=torch.long)).shape == (0, 3, 64, 64)


def test_project_activation_defaults_to_the_strongest_location(zfnet, images):
    output = layer_outputs(zfnet, images[1:2], ["relu4"])["relu4"]
    flat = int(output[0, 6].argmax())
    location = (flat // output.shape[-1], flat % output.shape[-1])
    expected = project(zfnet, images, "relu4", torch.tensor([[1, 6, *location]]))[0]
    assert torch.equal(project_activation(zfnet, images[1], "relu4", 6), expected)
    assert torch.equal(project_activation(zfnet, images[1:2], "relu4", 6, location), expected)


def test_project_top_activations_projects_each_channels_entries(zfnet, images):
    from course_utils.activations import mine_top_activations

    top = mine_top_activations(zfnet, images, ["conv4"], k=2, progress=False)["conv4"]
    grid = project_top_activations(zfnet, images, top, channels=[3, 0])
    assert grid.shape == (2, 2, 3, 64, 64)
    for row, channel in enumerate([3, 0]):
        for rank in range(2):
            y, x = top.locations[channel, rank].tolist()
            selection = torch.tensor([[int(top.image_indices[channel, rank]), channel, y, x]])
            assert (grid[row, rank] - project(zfnet, images, "conv4", selection)[0]).abs().max() <= ATOL


def test_project_leaves_the_model_unchanged(alexnet_model):
    state = {k: v.clone() for k, v in alexnet_model.state_dict().items()}
    flags = [(m.training, getattr(m, "inplace", None)) for m in alexnet_model.modules()]
    project(alexnet_model, torch.randn(1, 3, 127, 127), "relu2", torch.tensor([[0, 5, 3, 3]]))
    assert all(torch.equal(v, state[k]) for k, v in alexnet_model.state_dict().items())
    assert flags == [(m.training, getattr(m, "inplace", None)) for m in alexnet_model.modules()]
    assert hook_count(alexnet_model) == 0


def test_vgg_style_names_and_inplace_relus():
    torch.manual_seed(2)
    layers = []
    channels = 3
    for block, width in ((1, 4), (2, 6)):
        for index in (1, 2):
            layers += [
                (f"conv{block}_{index}", nn.Conv2d(channels, width, 3, padding=1)),
                (f"relu{block}_{index}", nn.ReLU(inplace=True)),
            ]
            channels = width
        layers.append((f"pool{block}", nn.MaxPool2d(2, 2)))
    net = NamedSequential(OrderedDict(layers)).eval()
    images = torch.randn(2, 3, 20, 20)
    selections = torch.tensor([[0, 2, 4, 1], [1, 5, 2, 2]])
    ours = project(net, images, "conv2_2", selections)
    assert (ours - deconv_reference(net, images, "conv2_2", selections, "activation")).abs().max() <= ATOL


@pytest.mark.slow
def test_vgg16_conv5_3_equals_autograd():
    from course_utils.models import vgg16

    torch.manual_seed(0)
    net = vgg16().eval()
    images = torch.randn(1, 3, 64, 64)
    selection = torch.tensor([[0, 10, 2, 2]])
    ours = project(net, images, "conv5_3", selection)
    assert (ours - deconv_reference(net, images, "conv5_3", selection, "activation")).abs().max() <= ATOL


# --------------------------------------------------------------------------------------------
# Refusals, with hooks removed every time
# --------------------------------------------------------------------------------------------


class FunctionalReLUNet(NamedSequential):
    """Runs its children in order but applies a functional ReLU after every conv."""

    def forward(self, x):
        for module in self:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                x = F.relu(x)
        return x


class InplaceFunctionalReLUNet(NamedSequential):
    def forward(self, x):
        for module in self:
            x = module(x)
            if isinstance(module, nn.Conv2d):
                x.relu_()
        return x


class SkippingNet(NamedSequential):
    """Forgets the pooling layer."""

    def forward(self, x):
        return self.conv2(self.relu1(self.conv1(x)))


def plain_layers():
    torch.manual_seed(0)
    return OrderedDict(
        [
            ("conv1", nn.Conv2d(3, 4, 3)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(4, 4, 3)),
            ("sigmoid2", nn.Sigmoid()),
            ("conv3", nn.Conv2d(4, 2, 1)),
        ]
    )


def bad_call(case):
    """(model, images, layer, selections) of each refused case."""
    images = torch.randn(2, 3, 16, 16)
    one = torch.tensor([[0, 0, 1, 1]])
    net = NamedSequential(plain_layers()).eval()
    reused_relu = nn.ReLU()
    cases = {
        "unknown layer": (net, images, "conv9", one),
        "functional relu": (FunctionalReLUNet(plain_layers()).eval(), images, "conv2", one),
        "in-place functional relu": (InplaceFunctionalReLUNet(plain_layers()).eval(), images, "conv2", one),
        "skipped layer": (SkippingNet(plain_layers()).eval(), images, "conv2", one),
        "reused relu": (
            NamedSequential(
                OrderedDict(
                    [
                        ("conv1", nn.Conv2d(3, 3, 3)),
                        ("relu1", reused_relu),
                        ("conv2", nn.Conv2d(3, 3, 3)),
                        ("relu2", reused_relu),
                    ]
                )
            ).eval(),
            images,
            "conv2",
            one,
        ),
        "sigmoid on the path": (net, images, "conv3", one),
        "channel out of range": (net, images, "conv2", torch.tensor([[0, 4, 1, 1]])),
        "location out of range": (net, images, "conv2", torch.tensor([[0, 1, 5, 0]])),
        "image index out of range": (net, images, "conv2", torch.tensor([[2, 1, 0, 0]])),
        "float selections": (net, images, "conv2", torch.tensor([[0.0, 1.0, 0.0, 0.0]])),
        "selections shape": (net, images, "conv2", torch.tensor([0, 1, 0, 0])),
        "unbatched image": (net, images[0], "conv2", one),
        "uint8 images": (net, (images * 50).clamp(0, 255).to(torch.uint8), "conv2", one),
        "float64 images": (net, images.double(), "conv2", one),
        "grayscale images": (net, images[:, :1], "conv2", one),
        "nan images": (net, images * float("nan"), "conv2", one),
        "training mode": (NamedSequential(plain_layers()).train(), images, "conv2", one),
        "image too small": (net, images[:, :, :4, :4], "conv2", one),
        "container model": (
            nn.Sequential(OrderedDict([("features", nn.Sequential(nn.Conv2d(3, 3, 3)))])).eval(),
            images,
            "conv1",
            one,
        ),
    }
    return cases[case]


ERRORS = {
    "unknown layer": "unknown layer 'conv9'.*conv1, relu1, pool1, conv2, sigmoid2, conv3",
    "functional relu": "'relu1' does not receive the unchanged output of 'conv1'.*functional ReLU",
    "in-place functional relu": "'relu1' does not receive the unchanged output of 'conv1'",
    "skipped layer": "ran layer 'conv2' where 'pool1' was expected",
    "reused relu": "used as layer 'relu1' and as layer 'relu2'",
    "sigmoid on the path": "'sigmoid2' is a Sigmoid.*cannot walk back",
    "channel out of range": "channel 4 is out of range: layer 'conv2' has 4 channels",
    "location out of range": r"location \(y=5, x=0\) is outside layer 'conv2'",
    "image index out of range": "image index 2 is out of range for 2 images",
    "float selections": "must be integers",
    "selections shape": r"\(S, 4\)",
    "unbatched image": r"add a batch dimension with image\[None\]",
    "uint8 images": "normalize",
    "float64 images": "torch.float64 but the model is torch.float32",
    "grayscale images": r"must have 3 channels \(RGB\), got 1 \(grayscale\).*expand\(-1, 3, -1, -1\)",
    "nan images": "NaN",
    "training mode": r"model.eval\(\)",
    "image too small": r"layer 'conv2' failed on its input of shape \(1, 4, 1, 1\)",
    "container model": "'features'.*containers.*alexnet",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_input_is_refused_with_a_clear_error_and_no_hook_count(case):
    model, images, layer, selections = bad_call(case)
    with pytest.raises(ValueError, match=ERRORS[case]):
        project(model, images, layer, selections)
    assert hook_count(model) == 0


def test_input_channels_follow_the_models_first_conv():
    net = NamedSequential(
        OrderedDict([("conv1", nn.Conv2d(1, 4, 3)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(3, 2))])
    ).eval()
    gray = torch.randn(2, 1, 12, 12)
    selection = torch.tensor([[1, 2, 1, 3]])
    assert (
        project(net, gray, "pool1", selection) - deconv_reference(net, gray, "pool1", selection, "activation")
    ).abs().max() <= ATOL
    with pytest.raises(ValueError, match=r"images must have 1 channel, got 3"):
        project(net, gray.expand(-1, 3, -1, -1), "pool1", selection)
    assert hook_count(net) == 0


def test_layers_after_the_projected_one_do_not_matter():
    net = NamedSequential(plain_layers()).eval()  # a Sigmoid above conv2 is not on the path
    images = torch.randn(1, 3, 16, 16)
    selection = torch.tensor([[0, 2, 3, 3]])
    assert (
        project(net, images, "conv2", selection) - deconv_reference(net, images, "conv2", selection, "activation")
    ).abs().max() <= ATOL


def test_adaptive_pooling_that_resizes_is_refused(alexnet_model):
    image = torch.randn(1, 3, 127, 127)  # pool5 is 3x3, avgpool makes it 6x6
    with pytest.raises(ValueError, match="'avgpool' averages a \\(3, 3\\) map down to \\(6, 6\\)"):
        project(alexnet_model, image, "fc6", torch.tensor([[0, 0, 0, 0]]))
    assert hook_count(alexnet_model) == 0


class ExplodingNet(NamedSequential):
    """Runs conv1, then fails."""

    def forward(self, x):
        self.conv1(x)
        raise RuntimeError("boom")


def test_hooks_are_removed_when_the_model_itself_raises():
    net = ExplodingNet(
        OrderedDict([("conv1", nn.Conv2d(3, 2, 3)), ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(2, 2, 1))])
    ).eval()
    with pytest.raises(RuntimeError, match="boom"):
        project(net, torch.randn(1, 3, 8, 8), "conv2", torch.tensor([[0, 0, 0, 0]]))
    assert hook_count(net) == 0
