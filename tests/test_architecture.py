"""Fig 6's measures: dead layer-1 filters and the spectral energy a stride aliases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.ablation import split_overrides
from course_utils.architecture import (
    FIRST_LAYER_VARIANTS,
    aliased_energy_fraction,
    dead_filter_fraction,
    dead_filters,
    filter_rms,
    first_layer_report,
)
from course_utils.models import ZFNet, ZFNetConfig


def checkerboard(size: int = 11) -> torch.Tensor:
    """(3, size, size) filter alternating +1/-1: all its energy at 0.5 cycles/pixel."""
    grid = torch.arange(size)
    return ((grid[:, None] + grid[None, :]) % 2 * 2 - 1).float().expand(3, size, size)


def gaussian(size: int = 11, sigma: float = 2.0) -> torch.Tensor:
    grid = torch.arange(size) - (size - 1) / 2
    blob = torch.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * sigma**2))
    return blob.expand(3, size, size)


def test_filter_rms_and_dead_filters_by_hand():
    weight = torch.stack(
        [torch.zeros(3, 5, 5), torch.full((3, 5, 5), 0.05), torch.full((3, 5, 5), 1.0), torch.full((3, 5, 5), -0.2)]
    )
    torch.testing.assert_close(filter_rms(weight), torch.tensor([0.0, 0.05, 1.0, 0.2]))
    assert dead_filters(weight).tolist() == [True, True, False, False]  # below 0.1 x the largest RMS (1.0)
    assert dead_filter_fraction(weight) == 0.5
    assert dead_filter_fraction(weight, threshold=0.01) == 0.25  # only the all-zero filter
    assert dead_filter_fraction(weight, threshold=0.3) == 0.75


def test_dead_filter_fraction_reads_a_models_layer_and_checks_its_arguments():
    model = ZFNet(ZFNetConfig(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8)))
    with torch.no_grad():
        model.conv1.weight[1].zero_()
    assert dead_filter_fraction(model) == 0.25
    assert dead_filter_fraction(model.conv1) == 0.25
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        dead_filter_fraction(model, threshold=1.5)
    with pytest.raises(ValueError, match="not a Conv2d"):
        dead_filter_fraction(model, layer="relu1")
    with pytest.raises(KeyError, match="unknown layer"):
        dead_filter_fraction(model, layer="conv9")
    with pytest.raises(ValueError, match=r"\(C_out, C_in, k, k\)"):
        dead_filter_fraction(torch.zeros(4, 5, 5))


def test_checkerboard_aliases_at_stride_4_and_gaussian_does_not():
    weight = torch.stack([checkerboard(), gaussian(), torch.zeros(3, 11, 11)])
    at_stride_4 = aliased_energy_fraction(weight, stride=4)
    assert at_stride_4[0] > 0.95  # the checkerboard lives at 0.5 cycles/pixel, above Nyquist 0.125
    assert at_stride_4[1] < 0.1  # a smooth blob keeps its energy at low frequencies
    assert at_stride_4[2] == 0.0  # no energy, nothing aliased
    at_stride_1 = aliased_energy_fraction(weight, stride=1)
    assert at_stride_1.tolist() == [0.0] * 3  # nothing lies above 0.5 cycles/pixel
    assert aliased_energy_fraction(weight, stride=2)[1] < at_stride_4[1]


def test_aliased_energy_fraction_matches_a_direct_dft():
    weight = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    fft_size, stride = 16, 3
    frequencies = np.arange(fft_size) / fft_size
    frequencies = np.minimum(frequencies, 1 - frequencies)  # |f| in cycles/pixel
    x = np.arange(5)
    basis = np.exp(-2j * np.pi * np.outer(np.arange(fft_size), x) / fft_size)  # (F, 5)
    expected = []
    for filt in weight.double().numpy():
        power = sum(np.abs(basis @ channel @ basis.T) ** 2 for channel in filt)  # (F, F): rows fy, columns fx
        aliased = np.maximum(frequencies[:, None], frequencies[None, :]) > 1 / (2 * stride)
        expected.append(power[aliased].sum() / power.sum())
    torch.testing.assert_close(
        aliased_energy_fraction(weight, stride=stride, fft_size=fft_size), torch.tensor(expected, dtype=torch.float32)
    )


def test_aliased_energy_fraction_takes_the_layers_stride_and_checks_arguments():
    model = ZFNet(ZFNetConfig(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8), conv1_kernel=11, conv1_stride=4))
    torch.testing.assert_close(aliased_energy_fraction(model), aliased_energy_fraction(model.conv1.weight, stride=4))
    with pytest.raises(ValueError, match="give the stride"):
        aliased_energy_fraction(model.conv1.weight)
    with pytest.raises(ValueError, match="fft_size"):
        aliased_energy_fraction(model, fft_size=8)


@pytest.mark.parametrize("name", list(FIRST_LAYER_VARIANTS))
def test_first_layer_report_for_every_first_layer(name):
    overrides, _ = split_overrides(name, FIRST_LAYER_VARIANTS[name])
    model = ZFNet(ZFNetConfig(conv_widths=(6, 4, 4, 4, 4), fc_widths=(8, 8), **overrides))
    with torch.no_grad():
        model.conv1.weight[2:] *= 0.1 / filter_rms(model)[2:, None, None, None]  # RMS 0.1 whatever the initialization
        model.conv1.weight[0] = 0.1 * checkerboard(overrides["conv1_kernel"])  # RMS 0.1, like the others
        model.conv1.weight[1] = 0.0
    report = first_layer_report(model)
    assert (report.kernel, report.stride, report.filters) == (
        overrides["conv1_kernel"],
        overrides["conv1_stride"],
        6,
    )
    assert report.dead_fraction == pytest.approx(1 / 6)
    weight = model.conv1.weight.detach()
    power = torch.fft.fft2(weight, s=(64, 64)).abs().pow(2).sum(1)
    f = torch.fft.fftfreq(64).abs()
    above = power[:, torch.maximum(f[:, None], f[None, :]) > 1 / (2 * overrides["conv1_stride"])].sum()
    assert report.aliased_energy == pytest.approx((above / power.sum()).item(), rel=1e-5)
    assert report.rms.shape == report.aliased_per_filter.shape == (6,)
    assert isinstance(model.conv1, nn.Conv2d) and model.conv1.stride == (overrides["conv1_stride"],) * 2


def test_first_layer_report_numbers_by_hand():
    model = ZFNet(ZFNetConfig(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8)))
    with torch.no_grad():
        for index, value in enumerate([0.0, 0.01, 0.2, 0.4]):  # constant filters: RMS = |value|
            model.conv1.weight[index] = value
    numbers = first_layer_report(model).numbers()
    assert set(numbers) == {"dead_fraction", "aliased_energy", "rms_max", "rms_median"}
    assert all(isinstance(value, float) for value in numbers.values())
    assert numbers["dead_fraction"] == 0.5 and numbers["rms_max"] == pytest.approx(0.4)
    assert numbers["rms_median"] == pytest.approx((0.01 + 0.2) / 2)  # the mean of the two middle values
    assert numbers["aliased_energy"] == pytest.approx(first_layer_report(model).aliased_energy)
    assert first_layer_report(model).format().startswith("4 filters 7x7, stride 2: dead 50%, aliased energy")


def test_fig_6_variants_differ_in_the_first_layer_and_the_clipping_only():
    assert len(FIRST_LAYER_VARIANTS) == 3
    trained = {name: split_overrides(name, overrides) for name, overrides in FIRST_LAYER_VARIANTS.items()}
    assert {name: (m["conv1_kernel"], m["conv1_stride"], t) for name, (m, t) in trained.items()} == {
        "ZF: 7x7 stride 2, no RMS clipping": (7, 2, {"max_filter_rms": None}),
        "AlexNet-like: 11x11 stride 4": (11, 4, {}),
        "ZF: 7x7 stride 2": (7, 2, {}),
    }
