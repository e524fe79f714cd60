"""Shared fixtures and helpers: small in-memory datasets, the path of the real-photo slice, the
independent reference forward pass, hook counting, and closing figures after every test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from course_utils.data import ImageTensorDataset, photo_folder

REPO = Path(__file__).resolve().parents[1]


def colour_dataset(n: int, size: int = 32, classes: int = 3, seed: int = 0) -> ImageTensorDataset:
    """Images whose class is their dominant colour channel plus noise: trivially learnable."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 80, (n, 3, size, size), generator=generator)
    images[torch.arange(n), labels % 3] += 150
    return ImageTensorDataset(
        images.to(torch.uint8), labels, [f"class{i}" for i in range(classes)], mean=(0.4, 0.4, 0.4), std=(0.3, 0.3, 0.3)
    )


@pytest.fixture
def colour_data() -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """(train, val) colour datasets of 32x32 images, 3 classes."""
    return colour_dataset(192, seed=0), colour_dataset(96, seed=1)


@pytest.fixture
def photos() -> Path:
    """The user's photo folder (an ImageFolder chosen with COURSE_PHOTOS); skips the test when
    none is chosen (CI sets it to a real-photo slice beside the repository)."""
    folder = photo_folder()
    if folder is None:
        pytest.skip("no photo folder: set COURSE_PHOTOS=/path/to/ImageFolder to run the real-photo tests")
    return folder


# Tests work on tiny tensors, where a second thread only adds synchronization (5-10x slower when
# the machine is busy); notebooks run in their own kernels and keep their own settings.
torch.set_num_threads(1)


def children_outputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: output}`` of every child of a flat model, computed by calling the children one by
    one by hand (no hooks, no course code): the independent reference for the package's capture.
    Outputs are copies, so later in-place layers cannot change them."""
    outputs, x = {}, images
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            outputs[name] = x.clone()
    return outputs


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks left on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened (when matplotlib is in use at all)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
