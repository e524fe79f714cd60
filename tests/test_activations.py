"""Top-k mining, receptive fields and patches (course_utils.activations)."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from course_utils.activations import (
    TopK,
    class_purity,
    image_patch,
    linear_cka,
    mine_top_activations,
    receptive_field,
    receptive_field_box,
)
from course_utils.data import ImageTensorDataset
from course_utils.models import NamedSequential, ZFNet, alexnet
from tests.conftest import children_outputs, hook_count


@pytest.fixture(scope="module")
def small_zfnet():
    torch.manual_seed(0)
    return ZFNet(conv_widths=(8, 12, 16, 16, 12), fc_widths=(24, 24)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(37, 3, 64, 64, generator=torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------------------------
# Mining
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [["conv1", "relu3", "pool5", "fc6"], ["conv5"]])
def test_streaming_top_k_equals_brute_force(small_zfnet, images, layers):
    k = 11  # more than one batch of 8: the running merge matters
    mined = mine_top_activations(small_zfnet, images, layers, k=k, batch_size=8, progress=False)
    assert list(mined) == layers
    for layer in layers:
        output = children_outputs(small_zfnet, images)[layer]
        per_image = output.flatten(2).amax(2) if output.ndim == 4 else output  # (N, C)
        expected_values, expected_images = per_image.T.sort(dim=1, descending=True, stable=True)
        top = mined[layer]
        channels = per_image.shape[1]
        assert top.layer == layer and top.k == k
        assert top.values.shape == (channels, k) and top.locations.shape == (channels, k, 2)
        assert torch.allclose(top.values, expected_values[:, :k], atol=1e-5)
        # Where the k-th and (k+1)-th values are well apart, the images are the same ones.
        distinct = (expected_values[:, : k + 1].diff(dim=1).abs() > 1e-4).all(dim=1)
        assert distinct.any()
        assert torch.equal(top.image_indices[distinct], expected_images[distinct, :k])
        # Every entry's location holds that entry's value; one entry per image and channel.
        channel_index = torch.arange(channels)[:, None].expand(-1, k)
        if output.ndim == 4:
            located = output[top.image_indices, channel_index, top.locations[..., 0], top.locations[..., 1]]
        else:
            located = output[top.image_indices, channel_index]
            assert (top.locations == 0).all()
        assert torch.allclose(located, top.values, atol=1e-5)
        assert all(len(set(row)) == k for row in top.image_indices.tolist())


def test_mining_accepts_datasets_tensors_and_batches(small_zfnet):
    generator = torch.Generator().manual_seed(0)
    dataset = ImageTensorDataset(
        torch.randint(0, 256, (20, 3, 64, 64), generator=generator, dtype=torch.uint8),
        torch.zeros(20, dtype=torch.long),
        ["only"],
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )
    normalized = dataset.normalize(dataset.images)
    from_dataset = mine_top_activations(small_zfnet, dataset, ["conv2"], k=4, batch_size=6, progress=False)["conv2"]
    from_tensor = mine_top_activations(small_zfnet, normalized, ["conv2", "conv2"], k=4, batch_size=6, progress=False)[
        "conv2"
    ]
    pairs = [(normalized[i : i + 5], torch.zeros(5)) for i in range(0, 20, 5)]
    from_pairs = mine_top_activations(small_zfnet, pairs, ["conv2"], k=4, progress=False)["conv2"]
    from_generator = mine_top_activations(
        small_zfnet, (b for b in normalized.split(7)), ["conv2"], k=4, progress=False
    )["conv2"]
    for other in (from_tensor, from_pairs, from_generator):
        assert torch.equal(from_dataset.image_indices, other.image_indices)
        assert torch.equal(from_dataset.locations, other.locations)
        assert torch.allclose(from_dataset.values, other.values, atol=1e-5)


def test_mining_is_deterministic_and_removes_its_hooks(small_zfnet, images):
    first = mine_top_activations(small_zfnet, images, ["relu2"], k=3, batch_size=10, progress=False)["relu2"]
    second = mine_top_activations(small_zfnet, images, ["relu2"], k=3, batch_size=10, progress=False)["relu2"]
    assert torch.equal(first.values, second.values) and torch.equal(first.image_indices, second.image_indices)
    assert hook_count(small_zfnet) == 0


def test_mining_works_on_alexnet_with_inplace_relus():
    torch.manual_seed(0)
    net = alexnet().eval()
    images = torch.randn(3, 3, 96, 96)
    top = mine_top_activations(net, images, ["conv2"], k=2, progress=False)["conv2"]
    output = children_outputs(net, images)["conv2"]  # conv2 before its in-place ReLU
    assert torch.allclose(top.values, output.flatten(2).amax(2).T.sort(dim=1, descending=True).values[:, :2], atol=1e-5)
    assert (top.values < 0).any()  # pre-ReLU values survived the in-place ReLU


def mining_error(case, model, images):
    batches = [images[:4], images[4:8, :1]]  # the second batch is grayscale
    calls = {
        "k too large": lambda: mine_top_activations(model, images[:5], ["conv1"], k=9, progress=False),
        "uint8": lambda: mine_top_activations(model, (images[:4] * 40).to(torch.uint8), ["conv1"], k=2, progress=False),
        "bad batch mid-stream": lambda: mine_top_activations(model, batches, ["conv1", "conv2"], k=2, progress=False),
        "nan": lambda: mine_top_activations(model, images[:4] * float("nan"), ["conv3"], k=2, progress=False),
        "unknown layer": lambda: mine_top_activations(model, images, ["conv6"], progress=False),
        "no layers": lambda: mine_top_activations(model, images, [], progress=False),
        "k zero": lambda: mine_top_activations(model, images, ["conv1"], k=0, progress=False),
        "not a batch": lambda: mine_top_activations(model, [["not a tensor"]], ["conv1"], k=1, progress=False),
    }
    return calls[case]


MINING_ERRORS = {
    "k too large": "k=9 but the data holds only 5 images",
    "uint8": "normalize",
    "bad batch mid-stream": r"images must have 3 channels \(RGB\), got 1",
    "nan": "'conv3' has NaN or infinite activations",
    "unknown layer": "unknown layer 'conv6'",
    "no layers": "at least one layer",
    "k zero": "k must be a positive integer",
    "not a batch": "each batch must be a tensor",
}


@pytest.mark.parametrize("case", sorted(MINING_ERRORS))
def test_mining_refuses_bad_input_and_leaves_no_hooks(small_zfnet, images, case):
    with pytest.raises((ValueError, TypeError), match=MINING_ERRORS[case]):
        mining_error(case, small_zfnet, images)()
    assert hook_count(small_zfnet) == 0


def test_mining_refuses_training_mode():
    net = ZFNet(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8)).train()
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        mine_top_activations(net, torch.randn(2, 3, 64, 64), ["conv1"], k=1, progress=False)


def test_selections_lists_each_channels_entries_in_order():
    top = TopK(
        "conv9",
        values=torch.tensor([[3.0, 2.0], [5.0, 1.0], [4.0, 0.5]]),
        image_indices=torch.tensor([[7, 1], [0, 2], [4, 4]]),
        locations=torch.tensor([[[1, 2], [0, 0]], [[3, 3], [1, 0]], [[2, 2], [0, 1]]]),
    )
    assert top.selections([2, 0]).tolist() == [[4, 2, 2, 2], [4, 2, 0, 1], [7, 0, 1, 2], [1, 0, 0, 0]]
    assert top.selections().shape == (6, 4)
    with pytest.raises(ValueError, match=r"channels: 3 is out of range: layer 'conv9''s channels are 0..2"):
        top.selections([3])


# --------------------------------------------------------------------------------------------
# Receptive fields
# --------------------------------------------------------------------------------------------


def test_receptive_fields_of_zfnet_computed_by_hand():
    net = ZFNet()
    # conv1 7x7/2 pad 3: size 7, stride 2, offset -3.  pool1 3x3/2 pad 1: 7 + 2*2 = 11,
    # stride 4, offset -3 - 1*2 = -5.  conv2 5x5 pad 2: 11 + 4*4 = 27, offset -5 - 2*4 = -13.
    # pool2 3x3/2 pad 1: 27 + 2*4 = 35, stride 8, offset -13 - 4 = -17.  conv3..5 3x3 pad 1:
    # +16 and -8 each: 51/-25, 67/-33, 83/-41.  pool5: 83 + 16 = 99, stride 16, offset -49.
    expected = {
        "conv1": (7, 2, -3),
        "relu1": (7, 2, -3),
        "pool1": (11, 4, -5),
        "conv2": (27, 4, -13),
        "pool2": (35, 8, -17),
        "conv3": (51, 8, -25),
        "conv5": (83, 8, -41),
        "pool5": (99, 16, -49),
    }
    for layer, value in expected.items():
        assert receptive_field(net, layer) == value, layer


def test_receptive_fields_of_alexnet_computed_by_hand():
    net = alexnet()
    # conv1 11/4 pad 2: (11, 4, -2); pool1 3/2: (19, 8, -2); conv2 5 pad 2: (51, 8, -18);
    # pool2 3/2: (67, 16, -18); conv3..5 3 pad 1: (99, 16, -34), (131, 16, -50), (163, 16, -66);
    # pool5 3/2: (195, 32, -66).
    assert receptive_field(net, "conv1") == (11, 4, -2)
    assert receptive_field(net, "conv2") == (51, 8, -18)
    assert receptive_field(net, "conv5") == (163, 16, -66)
    assert receptive_field(net, "pool5") == (195, 32, -66)


def linearized_copy(model):
    """Same geometry, but every path counts: |weights|, no ReLU, average instead of max pooling."""
    linear = copy.deepcopy(model)
    for name, module in list(linear._modules.items()):
        if isinstance(module, nn.ReLU):
            linear._modules[name] = nn.Identity()
        elif isinstance(module, nn.MaxPool2d):
            linear._modules[name] = nn.AvgPool2d(module.kernel_size, module.stride, module.padding)
        elif isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.abs_()
    return linear


def gradient_support(model, images, layer, channel, y, x):
    """Pixels where the gradient of one unit (summed over the batch) is non-zero: (H, W) bool."""
    images = images.clone().requires_grad_(True)
    activation = images
    for name, module in model.named_children():
        activation = module(activation)
        if name == layer:
            break
    (gradient,) = torch.autograd.grad(activation[:, channel, y, x].sum(), images)
    return gradient.abs().sum(dim=(0, 1)) > 0


def box_mask(box, size):
    top, left, bottom, right = box
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.mark.parametrize("layer, y, x", [("pool2", 4, 3), ("conv2", 7, 9), ("pool2", 0, 0), ("conv3", 7, 7)])
def test_receptive_field_equals_gradient_support(small_zfnet, layer, y, x):
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    channel = int(children_outputs(small_zfnet, images)[layer][:, :, y, x].sum(0).argmax())  # an active one
    box = receptive_field_box(small_zfnet, layer, y, x, 64)
    # Every path counted: the support is exactly the (clipped) receptive field.
    assert torch.equal(gradient_support(linearized_copy(small_zfnet), images, layer, channel, y, x), box_mask(box, 64))
    # The real net (ReLUs, max pools) uses part of it, never more.
    real_support = gradient_support(small_zfnet, images, layer, channel, y, x)
    assert real_support.any()
    assert not (real_support & ~box_mask(box, 64)).any()


def test_receptive_field_box_and_patch_clip_at_the_borders(small_zfnet):
    image = torch.arange(3 * 64 * 64, dtype=torch.float32).view(3, 64, 64)
    # pool2: size 35, stride 8, offset -17. Unit (4, 3): rows 15..49, columns 7..41.
    assert receptive_field_box(small_zfnet, "pool2", 4, 3, 64) == (15, 7, 50, 42)
    assert torch.equal(image_patch(small_zfnet, image, "pool2", 4, 3), image[:, 15:50, 7:42])
    # Unit (0, 7): rows -17..17 -> 0..17, columns 39..73 -> 39..63.
    assert receptive_field_box(small_zfnet, "pool2", 0, 7, (64, 64)) == (0, 39, 18, 64)
    assert image_patch(small_zfnet, image, "pool2", 0, 7).shape == (3, 18, 25)


def test_receptive_field_refusals(small_zfnet):
    with pytest.raises(ValueError, match="'flatten' \\(Flatten\\) has no spatial receptive field"):
        receptive_field(small_zfnet, "fc6")
    with pytest.raises(ValueError, match="'avgpool' \\(adaptive pooling\\)"):
        receptive_field(alexnet(), "fc6")
    with pytest.raises(ValueError, match="unknown layer 'conv7'"):
        receptive_field(small_zfnet, "conv7")
    with pytest.raises(ValueError, match="outside a 64x64 image"):
        receptive_field_box(small_zfnet, "pool2", 20, 0, 64)
    with pytest.raises(ValueError, match=r"one \(C, H, W\) tensor"):
        image_patch(small_zfnet, torch.zeros(1, 3, 64, 64), "pool2", 0, 0)


def test_non_square_receptive_field_needs_the_box():
    net = NamedSequential(OrderedDict([("conv1", nn.Conv2d(3, 2, (3, 5), stride=(1, 2)))]))
    with pytest.raises(ValueError, match="non-square"):
        receptive_field(net, "conv1")
    assert receptive_field_box(net, "conv1", 2, 3, (10, 20)) == (2, 6, 5, 11)


# --------------------------------------------------------------------------------------------
# Class purity (Fig 2) and linear CKA (Fig 4)
# --------------------------------------------------------------------------------------------


def test_class_purity_counts_the_most_common_class_by_hand():
    labels = torch.tensor([0, 0, 1, 2, 1, 1])
    top = TopK("conv1", torch.zeros(3, 3), torch.tensor([[0, 1, 2], [2, 4, 5], [0, 2, 3]]), torch.zeros(3, 3, 2))
    torch.testing.assert_close(class_purity(top, labels), torch.tensor([2 / 3, 1.0, 1 / 3]))
    with pytest.raises(ValueError, match="labels of the data that was mined"):
        class_purity(top, labels[:4])
    with pytest.raises(ValueError, match="int64"):
        class_purity(top, labels.float())


def test_linear_cka_by_hand_and_its_invariances():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, 3, 3, generator=generator)
    assert linear_cka(x, x) == pytest.approx(1.0)
    rotation, _ = torch.linalg.qr(torch.randn(36, 36, generator=generator))
    assert linear_cka(x, 3.0 * x.flatten(1) @ rotation + 5.0) == pytest.approx(1.0)  # rotation, scale, offset
    y = torch.randn(20, 7, generator=generator)
    a, b = x.flatten(1).double() - x.flatten(1).double().mean(0), y.double() - y.double().mean(0)
    gram_a, gram_b = a @ a.T, b @ b.T
    expected = (gram_a * gram_b).sum() / (gram_a.norm() * gram_b.norm())
    assert linear_cka(x, y) == pytest.approx(expected.item()) and 0 < linear_cka(x, y) < 1
    with pytest.raises(ValueError, match="same N"):
        linear_cka(x, y[:10])
    with pytest.raises(ValueError, match="constant"):
        linear_cka(x, torch.ones(20, 3))
