"""What the benchmarks' ``--imagenet`` mode shares: torchvision's AlexNet with the course's layer
names (ImageNet weights when cached, else random ones: the timing is the same)."""

from __future__ import annotations

import torch
import torchvision

from course_utils import models


def load_alexnet() -> tuple[torch.nn.Module, str]:
    """AlexNet in eval mode and a description; every ReLU out-of-place, since Captum's hooks
    refuse in-place ones (the numbers are the same)."""
    if models.weights_file(torchvision.models.AlexNet_Weights.IMAGENET1K_V1).exists():
        model, name = models.alexnet(pretrained=True), "AlexNet, ImageNet weights"
    else:
        torch.manual_seed(0)
        model, name = models.alexnet(), "AlexNet, random weights (ImageNet weights not cached; same timing)"
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    return model.eval(), name
