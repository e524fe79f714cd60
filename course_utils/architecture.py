"""Architecture selection (Zeiler & Fergus, section 4.1, Fig 6): measures on layer-1 filters.

The paper's visualizations of AlexNet's first layer (11x11 filters, stride 4) show "a mix of
extremely high and low frequency information" with dead filters, and its layer-2 features
aliasing artifacts from the large stride; 7x7 filters with stride 2 fix both. The pictures
are turned into two numbers here:

* **Dead filters** (:func:`dead_filters`): a filter whose RMS is below ``threshold`` (default
  0.1) times the RMS of the layer's strongest filter. Drawn on the layer's common contrast
  scale (as in Fig 6) such a filter is a flat grey square, and by Cauchy-Schwarz its response
  to any input patch is at most ``threshold`` times the largest response the strongest filter
  can give to a patch of the same norm: it contributes next to nothing to layer 2.
* **Aliased energy** (:func:`aliased_energy_fraction`): a conv layer with stride ``s`` samples
  its output every ``s`` pixels, so any filter frequency above the Nyquist frequency
  ``1 / (2 s)`` cycles/pixel (in x or in y) folds back onto a lower one. The fraction of each
  filter's spectral energy above that frequency (summed over input channels, DFT zero-padded
  to ``fft_size``) measures how much of what the layer passes on is aliased. The same filter
  aliases four times the band at stride 4 than at stride 2 (Nyquist 0.125 vs 0.25).

:data:`FIRST_LAYER_VARIANTS` holds Fig 6's three first layers (with and without the filter RMS
clipping) as :class:`~course_utils.models.ZFNetConfig` overrides, for
:func:`course_utils.ablation.run_ablation` (errors and :meth:`FirstLayerReport.numbers` over several seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .layers import get_layer

__all__ = [
    "FIRST_LAYER_VARIANTS",
    "filter_rms",
    "dead_filters",
    "dead_filter_fraction",
    "aliased_energy_fraction",
    "first_layer_report",
    "FirstLayerReport",
]

#: Fig 6's three panels as :class:`~course_utils.models.ZFNetConfig` overrides; the key
#: ``"train"`` holds :class:`~course_utils.train.TrainConfig` overrides of that variant only.
#: (a) the ZF first layer trained without the filter RMS clipping (one filter dominates),
#: (b) an AlexNet-like first layer (11x11, stride 4), (c) the ZF first layer (7x7, stride 2).
FIRST_LAYER_VARIANTS: dict[str, dict[str, Any]] = {
    "ZF: 7x7 stride 2, no RMS clipping": {"conv1_kernel": 7, "conv1_stride": 2, "train": {"max_filter_rms": None}},
    "AlexNet-like: 11x11 stride 4": {"conv1_kernel": 11, "conv1_stride": 4},
    "ZF: 7x7 stride 2": {"conv1_kernel": 7, "conv1_stride": 2},
}


def _conv(source: nn.Module | torch.Tensor, layer: str) -> tuple[torch.Tensor, int | None]:
    """``(weight (C_out, C_in, k, k), stride or None)`` of a conv layer, a model's ``layer`` or a raw weight."""
    if isinstance(source, torch.Tensor):
        weight, stride = source, None
    else:
        conv = source if isinstance(source, nn.Conv2d) else get_layer(source, layer)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d; pass a conv layer's name")
        weight, stride = conv.weight, conv.stride[0]
    if weight.ndim != 4:
        raise ValueError(f"a conv weight must have shape (C_out, C_in, k, k), got {tuple(weight.shape)}")
    return weight.detach().float(), stride


def filter_rms(source: nn.Module | torch.Tensor, layer: str = "conv1") -> torch.Tensor:
    """Root mean square of each filter, ``(C_out,)``, over its ``C_in * k * k`` weights.

    ``source``: a model (its ``layer`` is used), an ``nn.Conv2d`` or a weight ``(C_out, C_in, k, k)``.
    """
    weight, _ = _conv(source, layer)
    return weight.pow(2).mean(dim=(1, 2, 3)).sqrt()


def dead_filters(source: nn.Module | torch.Tensor, threshold: float = 0.1, layer: str = "conv1") -> torch.Tensor:
    """``(C_out,)`` bool: filters whose RMS is below ``threshold`` times the layer's largest filter RMS."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a fraction of the largest filter RMS, in (0, 1); got {threshold}")
    rms = filter_rms(source, layer)
    return rms < threshold * rms.max()


def dead_filter_fraction(source: nn.Module | torch.Tensor, threshold: float = 0.1, layer: str = "conv1") -> float:
    """Fraction of the layer's filters that are dead (see :func:`dead_filters`)."""
    return dead_filters(source, threshold, layer).float().mean().item()


def aliased_energy_fraction(
    source: nn.Module | torch.Tensor,
    stride: int | None = None,
    fft_size: int = 64,
    layer: str = "conv1",
) -> torch.Tensor:
    """``(C_out,)``: each filter's fraction of spectral energy above the Nyquist frequency of ``stride``.

    A frequency ``(fx, fy)`` (cycles/pixel, from a ``fft_size``-point DFT per input channel,
    powers summed over channels) counts as aliased when ``max(|fx|, |fy|) > 1 / (2 * stride)``.
    ``stride`` defaults to the conv layer's own; it is required for a raw weight tensor.
    Filters with no energy at all get 0.
    """
    weight, own_stride = _conv(source, layer)
    stride = stride or own_stride
    if stride is None or stride < 1:
        raise ValueError("give the stride (>= 1) at which the filters are applied, e.g. stride=4")
    if fft_size < weight.shape[-1]:
        raise ValueError(f"fft_size ({fft_size}) must be at least the filter size ({weight.shape[-1]})")
    power = torch.fft.fft2(weight, s=(fft_size, fft_size)).abs().pow(2).sum(dim=1)  # (C_out, F, F)
    frequencies = torch.fft.fftfreq(fft_size).abs()
    aliased = torch.maximum(frequencies[:, None], frequencies[None, :]) > 1.0 / (2 * stride)
    total = power.sum(dim=(1, 2))
    above = (power * aliased).sum(dim=(1, 2))
    return torch.where(total > 0, above / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))


@dataclass(frozen=True)
class FirstLayerReport:
    """Fig 6 in numbers for one model's first layer.

    Attributes:
        kernel, stride, filters: the layer's geometry.
        dead_fraction: fraction of filters whose RMS is below ``threshold`` times the largest.
        aliased_energy: energy-weighted mean over filters of the fraction of spectral energy
            above the stride's Nyquist frequency (the fraction of the whole layer's energy that
            aliases).
        rms: ``(C_out,)`` each filter's RMS.
        aliased_per_filter: ``(C_out,)`` each filter's aliased fraction.
    """

    kernel: int
    stride: int
    filters: int
    dead_fraction: float
    aliased_energy: float
    rms: torch.Tensor
    aliased_per_filter: torch.Tensor

    def numbers(self) -> dict[str, float]:
        """The numbers a results table records, as plain floats: ``{"dead_fraction",
        "aliased_energy", "rms_max", "rms_median"}`` (the median of an even count is the mean
        of the two middle values)."""
        return {
            "dead_fraction": float(self.dead_fraction),
            "aliased_energy": float(self.aliased_energy),
            "rms_max": self.rms.max().item(),
            "rms_median": self.rms.quantile(0.5).item(),
        }

    def format(self) -> str:
        """One line: geometry, dead filters, aliased energy."""
        return (
            f"{self.filters} filters {self.kernel}x{self.kernel}, stride {self.stride}: "
            f"dead {self.dead_fraction:.0%}, aliased energy {self.aliased_energy:.0%}"
        )


def first_layer_report(model: nn.Module, threshold: float = 0.1, layer: str = "conv1") -> FirstLayerReport:
    """Fig 6 in numbers for ``layer`` of ``model`` (see :class:`FirstLayerReport`)."""
    weight, stride = _conv(model, layer)
    per_filter = aliased_energy_fraction(model, layer=layer)
    energy = weight.pow(2).sum(dim=(1, 2, 3))
    return FirstLayerReport(
        kernel=weight.shape[-1],
        stride=int(stride or 1),
        filters=weight.shape[0],
        dead_fraction=dead_filter_fraction(model, threshold, layer),
        aliased_energy=((per_filter * energy).sum() / energy.sum().clamp_min(1e-30)).item(),
        rms=filter_rms(model, layer),
        aliased_per_filter=per_filter,
    )
