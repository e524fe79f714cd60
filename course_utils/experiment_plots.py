"""Figures and small tables for the analysis notebooks (06 correspondence, 07 ablation, 08 transfer).

Every figure function returns a matplotlib ``Figure`` (it does not call ``show``), with a title
and axis labels, like :mod:`course_utils.viz`.

* :func:`grouped_bars`: bars of mean +- std for several series over shared categories
  (Table 1's Delta per occlusion and layer, Table 3's train and val error per variant).
* :func:`mean_std_table` / :func:`mean_std_lines`: mean and sample std of a value over repeated
  records (seeds), and the curves ``x -> mean +- std`` per group (few-shot accuracy per method).
* :func:`filter_mosaic` / :func:`first_layer_figure`: a conv layer's filters on the layer's
  common contrast scale and their mean power spectrum with the stride's Nyquist band (Fig 6).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from .architecture import first_layer_report
from .models import get_layer

__all__ = ["grouped_bars", "mean_std_table", "mean_std_lines", "filter_mosaic", "first_layer_figure"]


def grouped_bars(
    categories: Sequence[str], series: dict[str, tuple[Sequence[float], Sequence[float | None] | None]],
    ylabel: str, title: str, reference: dict[str, Sequence[float | None]] | None = None,
) -> Figure:
    """Grouped bar chart: one group per category, one bar per series, error bars of one std.

    Args:
        categories: the ``K`` group labels along the x axis.
        series: ``{label: (means, stds)}``, each sequence of length ``K``; ``stds`` (or one of
            its entries) may be ``None`` for no error bar.
        ylabel, title: axis label and figure title.
        reference: optional ``{label: values}`` of length ``K`` drawn as black ticks over the
            groups (e.g. the paper's numbers); ``None`` entries are skipped.
    """
    if not categories or not series:
        raise ValueError("grouped_bars needs at least one category and one series")
    count = len(categories)
    for label, (means, stds) in series.items():
        if len(means) != count or (stds is not None and len(stds) != count):
            raise ValueError(f"series {label!r} must have {count} means and stds (one per category), "
                             f"got {len(means)} and {None if stds is None else len(stds)}")
    for label, values in (reference or {}).items():
        if len(values) != count:
            raise ValueError(f"reference {label!r} must have {count} values (one per category), got {len(values)}")
    figure, axis = plt.subplots(figsize=(max(6.0, 1.0 + count * (0.5 + 0.35 * len(series))), 4.2))
    width = 0.8 / len(series)
    positions = np.arange(count)
    for index, (label, (means, stds)) in enumerate(series.items()):
        errors = None if stds is None else [0.0 if s is None else s for s in stds]
        axis.bar(positions + (index - (len(series) - 1) / 2) * width, means, width, yerr=errors, capsize=3,
                 label=label)
    markers = ("_", "x", "+", "1")
    for index, (label, values) in enumerate((reference or {}).items()):
        shown = [(position, value) for position, value in zip(positions, values) if value is not None]
        axis.scatter([p for p, _ in shown], [v for _, v in shown], marker=markers[index % len(markers)],
                     s=400 if markers[index % len(markers)] == "_" else 60, color="black", zorder=3, label=label)
    axis.set_xticks(positions, list(categories), rotation=20 if count > 4 else 0, ha="right" if count > 4 else "center")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def mean_std_table(
    records: Sequence[dict[str, Any]], by: Sequence[str], value: str,
) -> dict[tuple[Any, ...], tuple[float, float | None, int]]:
    """``{key: (mean, sample std, count)}`` of ``record[value]`` grouped by ``key = tuple(record[k] for k in by)``.

    Keys keep the order of first appearance; the std is ``None`` for a single record.
    """
    groups: dict[tuple[Any, ...], list[float]] = {}
    for record in records:
        missing = [key for key in (*by, value) if key not in record]
        if missing:
            raise ValueError(f"record {record} has no {missing}; group by fields that every record has")
        groups.setdefault(tuple(record[key] for key in by), []).append(float(record[value]))
    table = {}
    for key, values in groups.items():
        tensor = torch.tensor(values, dtype=torch.float64)
        table[key] = (tensor.mean().item(), tensor.std().item() if len(values) > 1 else None, len(values))
    return table


def mean_std_lines(
    records: Sequence[dict[str, Any]], x: str, y: str, group: str, xlabel: str, ylabel: str, title: str,
    log_x: bool = False,
) -> Figure:
    """One line per ``record[group]``: the mean of ``record[y]`` at each ``record[x]``, shaded +- one std."""
    table = mean_std_table(records, (group, x), y)
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name in dict.fromkeys(key[0] for key in table):
        points = sorted((key[1], mean, std) for key, (mean, std, _) in table.items() if key[0] == name)
        xs = np.array([p[0] for p in points], dtype=float)
        means = np.array([p[1] for p in points])
        stds = np.array([0.0 if p[2] is None else p[2] for p in points])
        (line,) = axis.plot(xs, means, "-o", label=str(name))
        axis.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2)
    if log_x:
        axis.set_xscale("log")
        values = sorted({key[1] for key in table})
        axis.set_xticks(values, [str(v) for v in values])
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def filter_mosaic(weight: torch.Tensor, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Conv filters ``(C_out, C_in, k, k)`` (``C_in`` 1 or 3) tiled into one ``(H, W, 3)`` image in [0, 1].

    All filters share one contrast scale, ``0.5 + 0.5 * w / max|w|`` over the whole layer, so a
    weak (dead) filter shows as a flat grey square, as in the paper's Fig 6. Tiles are laid out
    row by row, ``columns`` per row (default: about square), separated and framed by ``pad``
    white pixels: ``H = rows * (k + pad) + pad``, ``W = columns * (k + pad) + pad``.
    """
    if weight.ndim != 4 or weight.shape[1] not in (1, 3):
        raise ValueError(f"weight must have shape (C_out, C_in, k, k) with C_in 1 (grey) or 3 (RGB), got "
                         f"{tuple(weight.shape)}; pass the first conv layer's weight, e.g. model.conv1.weight")
    if pad < 0:
        raise ValueError(f"pad must be >= 0 pixels, got {pad}")
    count, _, height, width = weight.shape
    columns = columns or math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    rows = math.ceil(count / columns)
    values = weight.detach().float().cpu()
    largest = values.abs().max().item()
    scaled = (0.5 + 0.5 * values / (largest if largest > 0 else 1.0)).expand(-1, 3, -1, -1)
    mosaic = np.ones((rows * (height + pad) + pad, columns * (width + pad) + pad, 3))
    for index, tile in enumerate(scaled.permute(0, 2, 3, 1).numpy()):
        top = pad + (index // columns) * (height + pad)
        left = pad + (index % columns) * (width + pad)
        mosaic[top:top + height, left:left + width] = tile
    return mosaic


def first_layer_figure(
    models: dict[str, nn.Module], threshold: float = 0.1, layer: str = "conv1", fft_size: int = 64,
) -> Figure:
    """Fig 6 for several models: their ``layer`` filters (top) and mean power spectrum (bottom).

    Top: :func:`filter_mosaic`, titled with kernel, stride, dead-filter fraction and aliased
    energy (:func:`course_utils.architecture.first_layer_report` with ``threshold``). Bottom:
    ``log10`` of the filters' power spectrum (``fft_size``-point DFT, summed over input
    channels, averaged over filters, zero frequency in the centre) with the square
    ``|f| <= 1 / (2 * stride)``: energy outside it aliases when the layer subsamples.
    """
    if not models:
        raise ValueError("give at least one model, e.g. {'7x7 stride 2': model}")
    figure, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models), 9), squeeze=False)
    for column, (name, model) in enumerate(models.items()):
        conv = get_layer(model, layer)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"layer {layer!r} of {name!r} is a {type(conv).__name__}, not a Conv2d")
        report = first_layer_report(model, threshold, layer)
        mosaic_axis, spectrum_axis = axes[0, column], axes[1, column]
        mosaic_axis.imshow(filter_mosaic(conv.weight), interpolation="nearest")
        mosaic_axis.set_title(f"{name}\n{report['filters']} filters {report['kernel']}x{report['kernel']}, "
                              f"stride {report['stride']}\ndead: {report['dead_fraction']:.0%}, "
                              f"aliased energy: {report['aliased_energy']:.0%}", fontsize=10)
        mosaic_axis.set_xticks([]), mosaic_axis.set_yticks([])
        weight = conv.weight.detach().float()
        power = torch.fft.fft2(weight, s=(fft_size, fft_size)).abs().pow(2).sum(dim=1).mean(dim=0)
        frequencies = torch.fft.fftshift(torch.fft.fftfreq(fft_size)).numpy()
        step = frequencies[1] - frequencies[0]
        low, high = frequencies[0] - step / 2, frequencies[-1] + step / 2
        spectrum_axis.imshow(torch.fft.fftshift(power).clamp_min(1e-12).log10().numpy(), cmap="magma",
                             origin="lower", extent=(low, high, low, high))
        nyquist = 1.0 / (2 * report["stride"])
        spectrum_axis.add_patch(Rectangle((-nyquist, -nyquist), 2 * nyquist, 2 * nyquist, fill=False,
                                          edgecolor="cyan", linewidth=2, label=f"Nyquist of stride {report['stride']}"))
        spectrum_axis.set(xlabel="horizontal frequency (cycles/pixel)", ylabel="vertical frequency (cycles/pixel)",
                          title="log10 mean power spectrum of the filters")
        spectrum_axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure
