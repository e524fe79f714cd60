"""Feature extraction, linear probes, few-shot subsets and the frozen-features softmax."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.data import ImageTensorDataset
from course_utils.layers import layer_outputs
from course_utils.models import NamedSequential, ZFNet, ZFNetConfig
from course_utils.train import TrainConfig, evaluate
from course_utils.transfer import (
    extract_features,
    few_shot_comparison,
    few_shot_subset,
    finetune_softmax,
    linear_probe,
    linear_probe_on_pixels,
    probe_layers,
    train_softmax_classifier,
    with_statistics,
)
from tests.conftest import children_outputs, hook_count

TINY = ZFNetConfig(num_classes=3, image_size=32, conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8))


def tiny_model(seed: int = 0, **overrides) -> ZFNet:
    torch.manual_seed(seed)
    return ZFNet(TINY, **overrides).eval()


# ---- features ------------------------------------------------------------------------------------------------------


def test_extract_features_match_a_children_outputs(colour_data):
    model, dataset = tiny_model(), colour_data[1]
    model.train()  # dropout would change the features: a model in training mode is refused, not switched
    with pytest.raises(ValueError, match="training mode"):
        extract_features(model, dataset, "conv1")
    assert model.training
    expected = children_outputs(model.eval(), dataset.normalize(dataset.images))
    for layer in ("conv1", "pool2", "pool5", "relu7", "fc8"):
        features = extract_features(model, dataset, layer, batch_size=40)
        torch.testing.assert_close(features, expected[layer].flatten(1), rtol=1e-5, atol=1e-6)
    assert hook_count(model) == 0
    pooled = extract_features(model, dataset, "relu1", pool_to=4)
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(expected["relu1"], 4).flatten(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(extract_features(model, dataset, "relu7", pool_to=4), expected["relu7"])


def test_layer_outputs_survive_in_place_relus_and_remove_hooks_on_errors():
    torch.manual_seed(0)
    model = NamedSequential(OrderedDict([("conv1", nn.Conv2d(3, 4, 3)), ("relu1", nn.ReLU(inplace=True))]))
    model.eval()
    captured = layer_outputs(model, torch.randn(2, 3, 8, 8), ["conv1", "relu1"])
    assert (captured["conv1"] < 0).any()  # not overwritten by the in-place ReLU
    torch.testing.assert_close(captured["relu1"], captured["conv1"].clamp_min(0))
    with pytest.raises(ValueError, match="layer 'conv1' failed on its input of shape"):
        layer_outputs(model, torch.randn(2, 3, 2, 2), ["relu1"])  # smaller than the kernel: fails inside the forward
    assert hook_count(model) == 0
    with pytest.raises(KeyError, match="unknown layer 'conv7'"):
        layer_outputs(model, torch.randn(2, 3, 8, 8), ["relu1", "conv7"])
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="add a batch dimension"):
        layer_outputs(model, torch.randn(3, 8, 8), ["conv1"])


# ---- linear probes -------------------------------------------------------------------------------------------------


def clusters(n: int, dims: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = 10 * torch.eye(classes, dims)
    return centres[labels] + torch.randn(n, dims, generator=generator), labels


def test_linear_probe_separates_separable_features():
    train_x, train_y = clusters(300, 6, 3, seed=0)
    val_x, val_y = clusters(150, 6, 3, seed=1)
    assert linear_probe(train_x * 1000 + 50, train_y, val_x * 1000 + 50, val_y, epochs=10) == 1.0


def test_linear_probe_scores_chance_on_random_labels():
    generator = torch.Generator().manual_seed(0)
    train_x, val_x = torch.randn(2000, 20, generator=generator), torch.randn(2000, 20, generator=generator)
    train_y, val_y = (
        torch.randint(0, 4, (2000,), generator=generator),
        torch.randint(0, 4, (2000,), generator=generator),
    )
    accuracy = linear_probe(train_x, train_y, val_x, val_y, epochs=10)
    assert abs(accuracy - 0.25) < 0.05  # 5 standard errors of a 2000-sample accuracy at p = 0.25


def two_brightness_classes(seed: int) -> ImageTensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(64) % 2
    images = torch.randint(0, 100, (64, 3, 8, 8), generator=generator) + 120 * labels.view(-1, 1, 1, 1)
    return ImageTensorDataset(images.to(torch.uint8), labels, ["dark", "bright"], (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))


@pytest.mark.parametrize("pool_to", [None, 2])
def test_pixel_probe_separates_brightness_classes(pool_to):
    assert linear_probe_on_pixels(two_brightness_classes(0), two_brightness_classes(1), pool_to, epochs=5) == 1.0


@pytest.mark.parametrize("pool_to", [None, 2])
def test_pixel_probe_is_the_linear_probe_on_normalized_pooled_pixels(pool_to):
    def weak_signal(seed: int) -> ImageTensorDataset:  # noise images with a faint class offset: accuracy well below 1
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(200) % 2
        images = torch.randint(0, 240, (200, 3, 8, 8), generator=generator) + 12 * labels.view(-1, 1, 1, 1)
        return ImageTensorDataset(images.to(torch.uint8), labels, ["a", "b"], (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))

    train_set, val_set = weak_signal(2), weak_signal(3)

    def features(dataset: ImageTensorDataset) -> torch.Tensor:
        mean, std = torch.tensor(dataset.mean).view(3, 1, 1), torch.tensor(dataset.std).view(3, 1, 1)
        pixels = (dataset.images.double() / 255 - mean) / std
        return (pixels if pool_to is None else F.avg_pool2d(pixels, 8 // pool_to)).flatten(1).float()

    expected = linear_probe(features(train_set), train_set.labels, features(val_set), val_set.labels, epochs=3, seed=5)
    assert 0.55 < expected < 0.95
    assert linear_probe_on_pixels(train_set, val_set, pool_to, epochs=3, seed=5) == pytest.approx(expected, abs=1e-9)


def test_pixel_probe_rejects_mismatched_classes(colour_data):
    train, val = colour_data
    other = ImageTensorDataset(val.images, val.labels, ["a", "b", "c"], val.mean, val.std)
    with pytest.raises(ValueError, match="same class_names"):
        linear_probe_on_pixels(train, other, epochs=1)


def test_softmax_classifier_folds_standardization_and_is_seeded():
    features, labels = clusters(200, 5, 3, seed=2)
    features = features + torch.randn(200, 5, generator=torch.Generator().manual_seed(3)) * 5
    classifier = train_softmax_classifier(features, labels, epochs=5, seed=4)
    shifted = train_softmax_classifier(features * 7 + 3, labels, epochs=5, seed=4)
    # standardized training sees the same numbers, so the classifiers agree on raw inputs of each scale
    torch.testing.assert_close(classifier(features), shifted(features * 7 + 3), rtol=1e-4, atol=1e-4)
    again = train_softmax_classifier(features, labels, epochs=5, seed=4)
    assert torch.equal(classifier.weight, again.weight) and torch.equal(classifier.bias, again.bias)
    other = train_softmax_classifier(features, labels, epochs=5, seed=5)
    assert not torch.equal(classifier.weight, other.weight)
    assert classifier.out_features == 3 and not classifier.weight.requires_grad


def test_linear_probe_checks_shapes():
    x, y = torch.zeros(10, 4), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"training features must have shape \(N, D\)"):
        linear_probe(torch.zeros(10, 2, 2), y, x, y)
    with pytest.raises(ValueError, match=r"validation labels must have shape \(10,\)"):
        linear_probe(x, y, x, y[:5])
    with pytest.raises(ValueError, match="same layer"):
        linear_probe(x, y, torch.zeros(10, 3), y)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        train_softmax_classifier(x, torch.full((10,), 2), num_classes=2)


def test_probe_layers_agrees_with_linear_probe_on_extracted_features(colour_data):
    model, (train_set, val_set) = tiny_model(), colour_data
    accuracies = probe_layers(model, train_set, val_set, ["pool1", "relu7"], progress=False, epochs=5)
    for layer in ("pool1", "relu7"):
        expected = linear_probe(
            extract_features(model, train_set, layer, pool_to=4),
            train_set.labels,
            extract_features(model, val_set, layer, pool_to=4),
            val_set.labels,
            epochs=5,
        )
        assert accuracies[layer] == pytest.approx(expected)
    assert accuracies["pool1"] > 0.9  # colour classes are linearly separable even in random first-layer features


# ---- few-shot subsets and transfer ---------------------------------------------------------------------------------


def test_few_shot_subset_exact_counts_and_seeding(colour_data):
    dataset = colour_data[0]  # 192 images, 64 per class
    subset = few_shot_subset(dataset, 5, seed=0)
    assert torch.bincount(subset.labels, minlength=3).tolist() == [5, 5, 5]
    assert subset.class_names == dataset.class_names
    same = few_shot_subset(dataset, 5, seed=0)
    assert torch.equal(subset.images, same.images)
    other = few_shot_subset(dataset, 5, seed=1)
    assert not torch.equal(subset.images, other.images)
    rows = [next(i for i in range(len(dataset)) if torch.equal(dataset.images[i], image)) for image in subset.images]
    assert rows == sorted(rows) and torch.equal(dataset.labels[rows], subset.labels)  # original order kept
    with pytest.raises(ValueError, match="class 'class0' has only 64 images"):
        few_shot_subset(dataset, 65)
    with pytest.raises(ValueError, match="at least 1"):
        few_shot_subset(dataset, 0)


def test_finetune_softmax_replaces_only_fc8(colour_data):
    train_set, val_set = colour_data
    model = tiny_model(num_classes=5)  # "pretrained" on 5 classes; the new task has 3
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    transferred, accuracy = finetune_softmax(model, few_shot_subset(train_set, 10), val_set, epochs=20)
    assert transferred.fc8.out_features == 3 and transferred.config.num_classes == 3
    for name, tensor in transferred.state_dict().items():
        if not name.startswith("fc8."):
            assert torch.equal(tensor, before[name]), name
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())  # original untouched
    assert model.fc8.out_features == 5
    assert not any(p.requires_grad for p in transferred.parameters())
    assert accuracy == pytest.approx(evaluate(transferred, val_set)[1])
    subset = few_shot_subset(train_set, 10)  # the same softmax as a linear probe on the features fc8 reads
    assert accuracy == pytest.approx(
        linear_probe(
            extract_features(model, subset, "drop7"),
            subset.labels,
            extract_features(model, val_set, "drop7"),
            val_set.labels,
            epochs=20,
        )
    )
    assert hook_count(model) == 0


def test_few_shot_comparison_records(colour_data):
    train_set, val_set = colour_data
    model = tiny_model()
    comparison = few_shot_comparison(
        model,
        train_set,
        val_set,
        shots=(2, 4),
        seeds=(0,),
        scratch_config=TrainConfig(epochs=1, batch_size=8),
        progress=False,
    )
    runs = comparison.runs
    assert [(r.method, r.per_class, r.seed) for r in runs] == [
        ("pretrained + softmax", 2, 0),
        ("from scratch", 2, 0),
        ("pretrained + softmax", 4, 0),
        ("from scratch", 4, 0),
    ]
    assert all(0 <= r.val_accuracy <= 1 and r.seconds >= 0 for r in runs)
    _, expected = finetune_softmax(model, few_shot_subset(train_set, 4, seed=0), val_set, seed=0)
    assert runs[2].val_accuracy == pytest.approx(expected)
    assert comparison.accuracies("from scratch") == {2: [runs[1].val_accuracy], 4: [runs[3].val_accuracy]}
    assert comparison.records()[0]["method"] == "pretrained + softmax"
    table = comparison.format().splitlines()
    assert len(table) == 3 and table[2].split()[:2] == ["4", f"{100 * expected:.1f}"]


def test_with_statistics_changes_only_the_normalization(colour_data):
    dataset = colour_data[0]
    dataset.extras["masks"] = torch.zeros(len(dataset), 2, dtype=torch.bool)
    other = with_statistics(dataset, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert other.images is dataset.images and other.labels is dataset.labels and other.extras.keys() == {"masks"}
    assert other.mean == (0.5, 0.5, 0.5) and dataset.mean == (0.4, 0.4, 0.4)
    torch.testing.assert_close(other.normalize(dataset.images[:1]), (dataset.images[:1] / 255.0 - 0.5) / 0.2)
