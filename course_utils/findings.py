"""The reproduction scoreboard: each finding of Zeiler & Fergus, scored on the shipped model.

Eight findings (design section 1): Fig 2 (what the layers learn), Fig 4 (when they settle),
Fig 5 (invariance), Fig 6 (architecture selection), Fig 7 (occlusion), Table 1
(correspondence), Table 3 (depth ablation) and Tables 4-7 (feature generalization). Each has

* a **criterion**, a pure function of the measured numbers, ``*_criterion(...) -> (passed,
  text)`` (``text`` states the numbers against their bounds). The notebooks assert their finding
  through the same functions, so every criterion lives here and only here;
* a **finding function**, ``*_finding(...) -> Finding``, which measures those numbers on a
  model, its snapshots, a dataset or a results table and applies the criterion.

A table (``data/ablation.json``, ``data/arch_selection.json``; :mod:`course_utils.ablation`)
that lacks a needed variant, a needed field, or has fewer than 3 seeds of one gives a row
"not reproduced" that says what is missing, never an error.

Command line (prints one row per finding, then as its last line ``findings reproduced: N of 8``;
exit status 0 even when findings are not reproduced, 1 with ``--strict`` unless all are)::

    python -m course_utils.findings
    python -m course_utils.findings --json build/findings.json --strict
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .ablation import DEPTH_VARIANTS, PAPER_TABLE_3, load_results, paper_depth_points, records_validated_on, summarize
from .activations import class_purity, linear_cka, mine_top_activations
from .architecture import first_layer_report
from .correspondence import PART_NAMES, correspondence_table
from .data import embedded
from .data.core import DATA_DIR, ImageTensorDataset, atomic_write
from .invariance import centred_correct_images, invariance_curves
from .layers import layer_outputs
from .models import CHECKPOINT_DIR, CheckpointError, load_shipped_model
from .occlusion import occlusion_map, occlusion_probability_drop
from .progress import progress_bar
from .threads import add_threads_option, set_torch_threads
from .train import TrainConfig, predict
from .transfer import PRETRAINED, SCRATCH, few_shot_comparison, few_shot_subset, probe_layers, with_statistics

__all__ = [
    "Finding",
    "CONV_LAYERS",
    "SYMMETRIC_CLASSES",
    "ARCHITECTURE_VARIANTS",
    "PROBE_LAYERS",
    "SHOTS",
    "MIN_SEEDS",
    "hierarchy_criterion",
    "evolution_criterion",
    "invariance_criterion",
    "architecture_criterion",
    "occlusion_criterion",
    "correspondence_criterion",
    "depth_criterion",
    "generalization_criterion",
    "table_completeness",
    "occlusion_images",
    "hierarchy_finding",
    "evolution_finding",
    "invariance_finding",
    "architecture_finding",
    "occlusion_finding",
    "correspondence_finding",
    "depth_finding",
    "generalization_finding",
    "format_scoreboard",
    "main",
]

#: The convolutional layers of Fig 2 and Fig 4.
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
#: Classes drawn at any rotation angle (all other main classes are drawn upright, within +-30 degrees).
SYMMETRIC_CLASSES: frozenset[str] = embedded.SYMMETRIC_CLASSES
#: Fig 6's panels (a), (b), (c) (names of :data:`course_utils.architecture.FIRST_LAYER_VARIANTS`).
ARCHITECTURE_VARIANTS = ("ZF: 7x7 stride 2, no RMS clipping", "AlexNet-like: 11x11 stride 4", "ZF: 7x7 stride 2")
#: Layers probed with a linear classifier (Table 7), bottom to top, and those "at or above layer 5".
PROBE_LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7")
UPPER_PROBE_LAYERS = ("relu5", "relu6", "relu7")
#: Training images per held-out class at which pretrained features must beat training from scratch.
SHOTS = (1, 5, 20)
#: Fewest training seeds per variant for a mean over seeds.
MIN_SEEDS = 3

#: Fig 5: the smallest step of each transformation, and the rotations (degrees) measured.
SMALLEST_STEPS = {"translate": (-2.0, 2.0), "scale": (0.9, 1.1), "rotate": (15.0, 345.0)}
ROTATIONS = tuple(float(angle) for angle in range(0, 360, 15))
TURNED = tuple(float(angle) for angle in range(60, 301, 15))  # well past the +-30 degrees of training
#: Fig 7: occluder side and step (notebook 05's population of images).
OCCLUDER_WINDOW, OCCLUDER_STRIDE = 16, 8
_TOLERANCE = 1e-9  # "at least" bounds on float differences (0.3 - 0.2 is 0.09999999999999998)


@dataclass
class Finding:
    """One row of the scoreboard.

    Attributes:
        name: the experiment, e.g. "Fig 2 hierarchy".
        paper: the paper's finding and numbers, as text.
        ours: what we measured, as text (or why it could not be measured).
        criterion: what must hold for the finding to count as reproduced.
        reproduced: whether it holds.
        details: the measured numbers (JSON-serializable).
    """

    name: str
    paper: str
    ours: str
    criterion: str
    reproduced: bool
    details: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """The finding as a readable text block (name and verdict, then paper, ours, criterion)."""
        verdict = "reproduced" if self.reproduced else "NOT reproduced"
        lines = [f"{self.name}: {verdict}"]
        for label, text in (("paper", self.paper), ("ours", self.ours), ("criterion", self.criterion)):
            lines.append(textwrap.fill(text, 100, initial_indent=f"  {label + ':':<11}", subsequent_indent=" " * 13))
        return "\n".join(lines)


@dataclass(frozen=True)
class _Spec:
    name: str
    paper: str
    criterion: str

    def finding(self, verdict: tuple[bool, str], details: dict[str, Any] | None = None) -> Finding:
        passed, ours = verdict
        return Finding(self.name, self.paper, ours, self.criterion, bool(passed), _plain(details or {}))


_SPECS = {
    "hierarchy": _Spec(
        "Fig 2 hierarchy",
        "layer 1 learns smooth edges and colour blobs; top-9 patches go from edges and textures (layers 1-3) "
        "to class parts (4) and whole objects (5)",
        "conv1 aliased energy (energy-weighted) <= 30%; mean top-9 class purity rises from conv1 to conv5 "
        "(conv1 < conv3 < conv5), conv5 >= 1.6 x conv1",
    ),
    "evolution": _Spec(
        "Fig 4 evolution",
        "low layers converge within a few epochs, the upper layers only after 40-50 epochs",
        "linear CKA of the first snapshot with the final model falls with depth (conv1 > conv3 > conv5), "
        "conv5 at least 0.3 below conv1",
    ),
    "invariance": _Spec(
        "Fig 5 invariance",
        "small shifts and scalings change layer 1 dramatically and layer 7 little; the output is not "
        "rotation-invariant except for rotationally symmetric objects",
        "mean relative distance after the smallest step (+-2 px, x0.9/1.1, +-15 deg) at layer 1 >= 2.5 x "
        "layer 7's for shift, scale and rotation; mean P(true) over all angles >= 0.9 for symmetric classes "
        "and < 0.5 over 60-300 deg for upright classes",
    ),
    "architecture": _Spec(
        "Fig 6 architecture",
        "(a) without RMS clipping one layer-1 filter dominates; (b) 11x11 stride 4: dead filters and "
        "aliasing; (c) 7x7 stride 2 fixes both and lowers the error (val top-1 40.5 -> 38.4%, Table 2)",
        f"means over >= {MIN_SEEDS} seeds: (a) 7x7/2 without clipping: largest conv1 filter RMS >= 3 x the "
        "median; (b) 11x11/4: >= 10% dead conv1 filters and more aliased energy than (c); (c) 7x7/2: fewer "
        "dead filters than (b) and the lowest val error of the three",
    ),
    "occlusion": _Spec(
        "Fig 7 occlusion",
        "the probability of the correct class drops significantly when the object is occluded",
        "covering the object lowers P(correct) more than covering background only in >= 90% of 20 "
        f"correctly classified validation images ({OCCLUDER_WINDOW}-px grey square, step {OCCLUDER_STRIDE} px)",
    ),
    "correspondence": _Spec(
        "Table 1 correspondence",
        "layer 5: eyes 0.067/0.069, nose 0.079 vs random 0.107 (parts ~33% below random); layer 7: all ~0.07-0.08",
        "20 draws of 5 face images: parts' mean Delta at layer 5 (pool5) <= 0.8 x random's, lower than "
        "random in >= 80% of the draws; the relative gap 1 - parts/random smaller at layer 7 (relu7) than at layer 5",
    ),
    "depth": _Spec(
        "Table 3 depth",
        f"removing conv3,4 + fc6,7 collapses (val top-1 error {PAPER_TABLE_3['full'][1]} -> "
        f"{PAPER_TABLE_3[DEPTH_VARIANTS[-1]][1]}%, {paper_depth_points(DEPTH_VARIANTS[-1]):+.1f} points); removing "
        f"conv3,4 / fc7 / fc6,7 alone costs {' / '.join(f'{paper_depth_points(v):+.1f}' for v in DEPTH_VARIANTS[1:-1])} "
        "points",
        f"means over >= {MIN_SEEDS} seeds: 'no conv3,4 + fc6,7' val error >= full + 10 points and >= each single "
        "removal + 5 points; each single removal <= full + 5 points; collapse > 3 x the larger std of the two",
    ),
    "generalization": _Spec(
        "Tables 4-7 generalization",
        "frozen ImageNet features + new softmax beat training from scratch (Caltech-101, 30/class: 86.5 vs "
        "46.5%); linear probes improve with depth (Caltech-101: layer 2 66.2%, layer 5 86.2%, layer 7 85.5%)",
        f"held-out classes, means over >= {MIN_SEEDS} seeds: pretrained + softmax beats scratch at 1, 5 and 20 "
        "images per class; the linear probe peaks at layer 5 or above (relu5-7), and layer 7 beats layer 2",
    ),
}


def _plain(value: Any) -> Any:
    """``value`` with tensors, tuples and numpy scalars turned into JSON types (floats, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _at_least(value: float, bound: float) -> bool:
    return value >= bound - _TOLERANCE


def _yes(passed: bool) -> str:
    return "yes" if passed else "NO"


def _require(values: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"{what} lacks {missing}; give one value for each of {list(keys)}")


def _complete(record: Mapping[str, Any], fields: Sequence[str]) -> bool:
    return all(record.get(name) is not None for name in fields)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if len(values) else float("nan")


# --------------------------------------------------------------------------------------------
# Criteria: pure functions of the measured numbers
# --------------------------------------------------------------------------------------------


def hierarchy_criterion(aliased_energy: float, purity: Mapping[str, float]) -> tuple[bool, str]:
    """Fig 2. ``aliased_energy``: conv1's energy-weighted fraction of spectral energy above the
    stride's Nyquist frequency (:func:`course_utils.architecture.first_layer_report`);
    ``purity``: mean top-9 class purity per layer (:func:`course_utils.activations.class_purity`)
    for at least conv1, conv3 and conv5. Returns ``(passed, text)``."""
    _require(purity, ("conv1", "conv3", "conv5"), "purity")
    smooth = aliased_energy <= 0.30
    rises = purity["conv1"] < purity["conv3"] < purity["conv5"]
    ratio = purity["conv5"] / purity["conv1"] if purity["conv1"] > 0 else math.inf
    enough = purity["conv5"] >= 1.6 * purity["conv1"] - _TOLERANCE
    layers = " ".join(f"{layer} {9 * value:.1f}" for layer, value in purity.items())
    return smooth and rises and enough, (
        f"conv1 aliased energy {100 * aliased_energy:.1f}% (<= 30%: {_yes(smooth)}); top-9 sharing one class, of 9: "
        f"{layers} (rises: {_yes(rises)}; conv5/conv1 = {ratio:.2f}, >= 1.6: {_yes(enough)})"
    )


def evolution_criterion(cka: Mapping[str, float]) -> tuple[bool, str]:
    """Fig 4. ``cka``: linear CKA per layer between the first snapshot and the final model, for
    at least conv1, conv3 and conv5. Returns ``(passed, text)``."""
    _require(cka, ("conv1", "conv3", "conv5"), "cka")
    falls = cka["conv1"] > cka["conv3"] > cka["conv5"]
    drop = cka["conv1"] - cka["conv5"]
    enough = _at_least(drop, 0.3)
    layers = ", ".join(f"{layer} {value:.2f}" for layer, value in cka.items())
    return falls and enough, (
        f"CKA with the final model: {layers} (falls: {_yes(falls)}; conv1 - conv5 = {drop:.2f}, >= 0.3: {_yes(enough)})"
    )


def invariance_criterion(
    step_distances: Mapping[str, tuple[float, float]],
    symmetric_probability: float,
    upright_turned_probability: float,
) -> tuple[bool, str]:
    """Fig 5.

    Args:
        step_distances: per transformation ("translate", "scale", "rotate"), ``(layer 1, layer 7)``
            mean relative distances after the smallest step.
        symmetric_probability: mean P(true class) over all angles of the images of symmetric
            classes (NaN when there are none).
        upright_turned_probability: mean P(true class) over 60-300 degrees of the images of
            upright classes (NaN when there are none).

    Returns ``(passed, text)``.
    """
    _require(step_distances, tuple(SMALLEST_STEPS), "step_distances")
    parts, passed = [], True
    for kind in SMALLEST_STEPS:
        layer1, layer7 = step_distances[kind]
        steep = layer1 >= 2.5 * layer7 - _TOLERANCE
        passed &= steep
        ratio = layer1 / layer7 if layer7 > 0 else math.inf
        parts.append(f"{kind} {layer1:.2f} vs {layer7:.2f} ({ratio:.1f}x: {_yes(steep)})")
    symmetric = _at_least(symmetric_probability, 0.9)  # False for NaN
    upright = upright_turned_probability < 0.5

    def probability(value: float) -> str:
        return "n/a (no images)" if math.isnan(value) else f"{value:.2f}"

    return passed and symmetric and upright, (
        f"smallest step, layer 1 vs layer 7: {'; '.join(parts)}; P(true) symmetric classes "
        f"{probability(symmetric_probability)} (>= 0.9: {_yes(symmetric)}), upright classes at 60-300 deg "
        f"{probability(upright_turned_probability)} (< 0.5: {_yes(upright)})"
    )


_ARCHITECTURE_KEYS = ("val_error", "dead_fraction", "aliased_energy", "rms_ratio")


def architecture_criterion(
    unclipped: Mapping[str, float],
    alexnet: Mapping[str, float],
    zf: Mapping[str, float],
) -> tuple[bool, str]:
    """Fig 6. Each argument holds one variant's means over seeds: ``val_error`` (fraction),
    ``dead_fraction``, ``aliased_energy`` and ``rms_ratio`` (largest / median conv1 filter RMS).

    ``unclipped``: 7x7 stride 2 trained without the RMS clipping (panel a); ``alexnet``: 11x11
    stride 4 (b); ``zf``: 7x7 stride 2 with clipping (c). Returns ``(passed, text)``.
    """
    for name, values in (("unclipped", unclipped), ("alexnet", alexnet), ("zf", zf)):
        _require(values, _ARCHITECTURE_KEYS, name)
    dominates = _at_least(unclipped["rms_ratio"], 3.0)
    dead = _at_least(alexnet["dead_fraction"], 0.10)
    aliases = alexnet["aliased_energy"] > zf["aliased_energy"]
    fewer_dead = zf["dead_fraction"] < alexnet["dead_fraction"]
    lowest = zf["val_error"] < min(unclipped["val_error"], alexnet["val_error"])
    return dominates and dead and aliases and fewer_dead and lowest, (
        f"(a) largest/median conv1 RMS {unclipped['rms_ratio']:.1f} (>= 3: {_yes(dominates)}); "
        f"(b) dead {100 * alexnet['dead_fraction']:.0f}% (>= 10%: {_yes(dead)}), aliased energy "
        f"{100 * alexnet['aliased_energy']:.0f}% vs (c) {100 * zf['aliased_energy']:.0f}% (more: {_yes(aliases)}); "
        f"(c) dead {100 * zf['dead_fraction']:.0f}% (fewer than b: {_yes(fewer_dead)}); val error a/b/c "
        f"{100 * unclipped['val_error']:.1f}/{100 * alexnet['val_error']:.1f}/{100 * zf['val_error']:.1f}% "
        f"(c lowest: {_yes(lowest)})"
    )


def occlusion_criterion(object_drops: Sequence[float], background_drops: Sequence[float]) -> tuple[bool, str]:
    """Fig 7. Per image, the mean fall of P(correct) with the occluder on the object and on
    background only (:func:`course_utils.occlusion.occlusion_probability_drop`); at least 20
    images. An image whose drops cannot be compared (NaN: no position of that kind) counts
    against the finding. Returns ``(passed, text)``."""
    if len(object_drops) != len(background_drops):
        raise ValueError(
            f"object_drops ({len(object_drops)}) and background_drops ({len(background_drops)}) "
            "must hold one value per image each"
        )
    count = len(object_drops)
    wins = sum(obj > back for obj, back in zip(object_drops, background_drops))
    enough_images = count >= 20
    passed = enough_images and _at_least(wins / count, 0.9)
    return passed, (
        f"object covered hurts more in {wins} of {count} images ({100 * wins / max(count, 1):.0f}%, "
        f">= 90% of >= 20: {_yes(passed)}); mean fall of P(correct): object "
        f"{_mean([v for v in object_drops if not math.isnan(v)]):.3f}, background "
        f"{_mean([v for v in background_drops if not math.isnan(v)]):.3f}"
    )


def correspondence_criterion(
    parts_layer5: Sequence[float],
    random_layer5: Sequence[float],
    parts_layer7: Sequence[float],
    random_layer7: Sequence[float],
) -> tuple[bool, str]:
    """Table 1. Per draw: the parts' Delta (mean over left eye, right eye, nose) and the random
    squares' Delta, at layer 5 (pool5) and layer 7 (relu7). Returns ``(passed, text)``."""
    lengths = {len(parts_layer5), len(random_layer5), len(parts_layer7), len(random_layer7)}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError("give one value per draw, the same number of draws (>= 1) for every argument")
    parts5, random5, parts7, random7 = map(_mean, (parts_layer5, random_layer5, parts_layer7, random_layer7))
    below = parts5 <= 0.8 * random5 + _TOLERANCE
    wins = sum(p < r for p, r in zip(parts_layer5, random_layer5))
    often = _at_least(wins / len(parts_layer5), 0.8)
    gap5, gap7 = 1 - parts5 / random5, 1 - parts7 / random7
    narrower = gap7 < gap5
    return below and often and narrower, (
        f"layer 5: parts {parts5:.3f} vs random {random5:.3f} (ratio {parts5 / random5:.2f}, <= 0.8: {_yes(below)}), "
        f"parts lower in {wins} of {len(parts_layer5)} draws (>= 80%: {_yes(often)}); layer 7: parts {parts7:.3f} "
        f"vs random {random7:.3f}; gap {100 * gap7:.0f}% at layer 7 vs {100 * gap5:.0f}% at layer 5 "
        f"(smaller: {_yes(narrower)})"
    )


def depth_criterion(means: Mapping[str, float], stds: Mapping[str, float]) -> tuple[bool, str]:
    """Table 3. ``means`` / ``stds``: val error (fraction) mean and sample std over seeds per
    variant of :data:`DEPTH_VARIANTS`. Returns ``(passed, text)``."""
    _require(means, DEPTH_VARIANTS, "means")
    _require(stds, (DEPTH_VARIANTS[0], DEPTH_VARIANTS[-1]), "stds")
    full, singles, collapse = DEPTH_VARIANTS[0], DEPTH_VARIANTS[1:-1], DEPTH_VARIANTS[-1]
    rise = means[collapse] - means[full]
    big = _at_least(rise, 0.10)
    above_singles = all(_at_least(means[collapse] - means[single], 0.05) for single in singles)
    cheap = all(means[single] - means[full] <= 0.05 + _TOLERANCE for single in singles)
    spread = max(stds[full], stds[collapse])
    significant = rise > 3 * spread
    costs = ", ".join(f"{single} {100 * (means[single] - means[full]):+.1f}" for single in singles)
    return big and above_singles and cheap and significant, (
        f"val error full {100 * means[full]:.1f}%; collapse ({collapse}) {100 * rise:+.1f} points (>= +10: "
        f"{_yes(big)}; >= each single removal + 5: {_yes(above_singles)}; > 3 std = {300 * spread:.1f}: "
        f"{_yes(significant)}); single removals {costs} points (each <= +5: {_yes(cheap)})"
    )


def generalization_criterion(
    pretrained: Mapping[int, Sequence[float]],
    scratch: Mapping[int, Sequence[float]],
    probes: Mapping[str, float],
) -> tuple[bool, str]:
    """Tables 4-7.

    Args:
        pretrained, scratch: per number of training images per class (at least 1, 5 and 20), the
            validation accuracy of each seed, for frozen features + new softmax and for the same
            network trained from scratch.
        probes: linear-probe accuracy per layer of :data:`PROBE_LAYERS`.

    Returns ``(passed, text)``.
    """
    _require(probes, PROBE_LAYERS, "probes")
    parts, beats = [], True
    for shots in SHOTS:
        seeds = min(len(pretrained.get(shots, ())), len(scratch.get(shots, ())))
        if seeds < MIN_SEEDS:
            beats = False
            parts.append(f"{shots}/class: {seeds} seeds (need >= {MIN_SEEDS})")
            continue
        ours, theirs = _mean(pretrained[shots]), _mean(scratch[shots])
        beats &= ours > theirs
        parts.append(f"{shots}/class {100 * ours:.0f} vs {100 * theirs:.0f}%")
    best = max(PROBE_LAYERS, key=lambda layer: probes[layer])  # the shallowest of tied layers
    high = best in UPPER_PROBE_LAYERS
    top_beats_low = probes["relu7"] > probes["relu2"]
    layers = " ".join(f"{layer[-1]}:{100 * probes[layer]:.0f}" for layer in PROBE_LAYERS)
    return beats and high and top_beats_low, (
        f"pretrained vs scratch: {', '.join(parts)} (pretrained wins: {_yes(beats)}); probe accuracy % by layer "
        f"{layers} (peak {best}, layer >= 5: {_yes(high)}; layer 7 > layer 2: {_yes(top_beats_low)})"
    )


# --------------------------------------------------------------------------------------------
# Tables: completeness
# --------------------------------------------------------------------------------------------


def table_completeness(
    records: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    fields: Sequence[str] = ("val_error",),
    min_seeds: int = MIN_SEEDS,
) -> str | None:
    """``None`` when every variant has at least ``min_seeds`` seeds with all ``fields``, else the reason.

    E.g. ``"incomplete: 5 of 15 runs (full: 2 seeds, no fc7: 0 seeds)"``: a run counts when its
    record has every field of ``fields``; at most ``min_seeds`` count per variant.
    """
    seeds: dict[str, set[Any]] = {name: set() for name in variants}
    for record in records:
        if record.get("variant") in seeds and _complete(record, fields):
            seeds[record["variant"]].add(record.get("seed"))
    short = {name: len(found) for name, found in seeds.items() if len(found) < min_seeds}
    if not short:
        return None
    have = sum(min(len(found), min_seeds) for found in seeds.values())
    lacking = ", ".join(f"{name}: {count} seed{'' if count == 1 else 's'}" for name, count in short.items())
    stale = [
        name
        for name in fields
        if name != "val_error"
        and any(record.get("variant") in seeds and record.get(name) is None for record in records)
    ]
    without = (
        (f"; records without {', '.join(stale)} do not count and are never re-run: delete the file to regenerate them")
        if stale
        else ""
    )
    return f"incomplete: {have} of {min_seeds * len(variants)} runs ({lacking}{without})"


# --------------------------------------------------------------------------------------------
# Findings: measure, then apply the criterion
# --------------------------------------------------------------------------------------------


def hierarchy_finding(model: nn.Module, val: ImageTensorDataset, k: int = 9, progress: bool = True) -> Finding:
    """Fig 2 on ``model`` (eval mode): conv1's aliased energy and the mean top-``k`` class purity of
    conv1..conv5 over the images of ``val`` (notebook 03's "agreement")."""
    aliased = first_layer_report(model).aliased_energy
    tops = mine_top_activations(model, val, CONV_LAYERS, k=k, progress=progress)
    purity = {layer: class_purity(tops[layer], val.labels).mean().item() for layer in CONV_LAYERS}
    return _SPECS["hierarchy"].finding(
        hierarchy_criterion(aliased, purity), {"aliased_energy": aliased, "purity": purity}
    )


def evolution_finding(
    snapshot: nn.Module,
    model: nn.Module,
    val: ImageTensorDataset,
    num_images: int = 150,
    snapshot_name: str = "first snapshot",
) -> Finding:
    """Fig 4: linear CKA between ``snapshot`` and the final ``model`` per conv layer, on the first
    ``num_images`` images of ``val`` (each layer's output ``(N, C, h, w)``, as in notebook 03)."""
    images = val.normalize(val.images[:num_images])
    cka = {
        layer: linear_cka(layer_outputs(snapshot, images, [layer])[layer], layer_outputs(model, images, [layer])[layer])
        for layer in CONV_LAYERS
    }
    return _SPECS["evolution"].finding(
        evolution_criterion(cka), {"snapshot": snapshot_name, "images": len(images), "cka": cka}
    )


def invariance_finding(model: nn.Module, val: ImageTensorDataset, per_class: int = 2, search: int = 500) -> Finding:
    """Fig 5 on the ``per_class`` most centred correctly classified images per class among the
    first ``search`` of ``val`` (:func:`~course_utils.invariance.centred_correct_images`): relative
    distances at relu1 and relu7 after the smallest steps, P(true class) under rotation."""
    rows = centred_correct_images(model, val, per_class, search)
    if len(rows) == 0:
        return _SPECS["invariance"].finding(
            (False, f"not measured: no correctly classified image among the first {search} validation images")
        )
    images, labels = val.normalize(val.images[rows]), val.labels[rows]
    amounts = {
        "translate": (0.0, *SMALLEST_STEPS["translate"]),
        "scale": (1.0, *SMALLEST_STEPS["scale"]),
        "rotate": ROTATIONS,
    }
    curves = {
        kind: invariance_curves(model, images, kind, amounts[kind], layers=("relu1", "relu7"), target=labels)
        for kind in amounts
    }

    def mean_at(values: torch.Tensor, kind: str, chosen: Sequence[float]) -> float:
        """Mean of an ``(N, A)`` table of ``curves[kind]`` over the ``chosen`` amounts."""
        columns = [curves[kind].amounts.tolist().index(amount) for amount in chosen]
        return values[:, columns].mean().item()

    steps = {
        kind: (
            mean_at(curves[kind].relative_distances["relu1"], kind, SMALLEST_STEPS[kind]),
            mean_at(curves[kind].relative_distances["relu7"], kind, SMALLEST_STEPS[kind]),
        )
        for kind in SMALLEST_STEPS
    }
    symmetric = torch.tensor([val.class_names[label] in SYMMETRIC_CLASSES for label in labels.tolist()])
    probabilities = curves["rotate"].probabilities
    symmetric_probability = mean_at(probabilities[symmetric], "rotate", ROTATIONS)
    upright_probability = mean_at(probabilities[~symmetric], "rotate", TURNED)
    details = {
        "images": len(rows),
        "symmetric_images": int(symmetric.sum()),
        "step_distances": steps,
        "symmetric_probability": symmetric_probability,
        "upright_turned_probability": upright_probability,
    }
    return _SPECS["invariance"].finding(
        invariance_criterion(steps, symmetric_probability, upright_probability), details
    )


def architecture_finding(
    records: Sequence[Mapping[str, Any]], source: str = "data/arch_selection.json", min_seeds: int = MIN_SEEDS
) -> Finding:
    """Fig 6 from the records of :func:`course_utils.ablation.run_ablation` on
    :data:`ARCHITECTURE_VARIANTS` (each with ``first_layer`` numbers); ``source`` names them in
    messages. ``min_seeds`` below the scoreboard's :data:`MIN_SEEDS` is for exploring
    (:mod:`course_utils.designs`), not for a verdict."""
    spec = _SPECS["architecture"]
    fields = ("val_error", "first_layer")
    problem = table_completeness(records, ARCHITECTURE_VARIANTS, fields, min_seeds)
    if problem is not None:
        return spec.finding((False, f"{problem} in {source}; `make ablation` fills it in"))
    means = {}
    for name in ARCHITECTURE_VARIANTS:
        runs = [record for record in records if record["variant"] == name and _complete(record, fields)]
        layers = [record["first_layer"] for record in runs]
        means[name] = {
            "val_error": _mean([record["val_error"] for record in runs]),
            "dead_fraction": _mean([layer["dead_fraction"] for layer in layers]),
            "aliased_energy": _mean([layer["aliased_energy"] for layer in layers]),
            "rms_ratio": _mean([layer["rms_max"] / layer["rms_median"] for layer in layers]),
            "seeds": len(runs),
        }
    return spec.finding(architecture_criterion(*(means[name] for name in ARCHITECTURE_VARIANTS)), {"variants": means})


def occlusion_images(model: nn.Module, dataset: ImageTensorDataset, count: int = 20, search: int = 500) -> torch.Tensor:
    """Indices ``(M,)`` int64, ``M <= count``: correctly classified images among the first ``search``,
    spread over the classes: each class's first such image (classes in order), then each class's
    second, and so on. Deterministic."""
    candidates = dataset.subset(range(min(search, len(dataset))))
    correct = predict(model, candidates).argmax(dim=1) == candidates.labels
    per_class = [
        torch.nonzero((candidates.labels == label) & correct).flatten().tolist() for label in range(dataset.num_classes)
    ]
    chosen = [
        rows[rank] for rank in range(max(map(len, per_class), default=0)) for rows in per_class if rank < len(rows)
    ]
    return torch.tensor(chosen[:count], dtype=torch.long)


def occlusion_finding(model: nn.Module, val: ImageTensorDataset, count: int = 20, progress: bool = True) -> Finding:
    """Fig 7 on :func:`occlusion_images`: per image, the mean fall of P(correct) with the occluder
    on the object vs on background only (``extras["masks"]``)."""
    if "masks" not in val.extras:
        raise ValueError("the dataset has no object masks (extras['masks']); use the embedded dataset")
    rows = occlusion_images(model, val, count)
    object_drops, background_drops = [], []
    for index in progress_bar(rows.tolist(), desc="occlusion maps", leave=False, progress=progress):
        result = occlusion_map(
            model,
            val.normalize(val.images[index]),
            OCCLUDER_WINDOW,
            OCCLUDER_STRIDE,
            target=int(val.labels[index]),
            layer=None,
        )
        drop = occlusion_probability_drop(result, val.extras["masks"][index].bool())
        object_drops.append(drop.object_drop)
        background_drops.append(drop.background_drop)
    details = {"images": rows.tolist(), "object_drops": object_drops, "background_drops": background_drops}
    return _SPECS["occlusion"].finding(occlusion_criterion(object_drops, background_drops), details)


def correspondence_finding(
    model: nn.Module,
    val: ImageTensorDataset,
    draws: int = 20,
    num_images: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> Finding:
    """Table 1: :func:`course_utils.correspondence.correspondence_table` at pool5 and relu7; the
    parts' Delta of a draw is the mean over left eye, right eye and nose."""
    table = correspondence_table(
        model, val, draws=draws, seed=seed, num_images=num_images, layers=("pool5", "relu7"), progress=progress
    )
    values = {key: list(summary.values) for key, summary in table.deltas.items()}
    per_draw = {
        layer: [_mean(deltas) for deltas in zip(*(values[(part, layer)] for part in PART_NAMES))]
        for layer in ("pool5", "relu7")
    }
    verdict = correspondence_criterion(
        per_draw["pool5"], values[("random", "pool5")], per_draw["relu7"], values[("random", "relu7")]
    )
    details = {
        "draws": draws,
        "images_per_draw": num_images,
        "mean": {f"{occlusion} {layer}": summary.mean for (occlusion, layer), summary in table.deltas.items()},
        "parts_per_draw": per_draw,
        "random_per_draw": {layer: values[("random", layer)] for layer in ("pool5", "relu7")},
    }
    return _SPECS["correspondence"].finding(verdict, details)


def depth_finding(records: Sequence[Mapping[str, Any]], source: str = "data/ablation.json") -> Finding:
    """Table 3 from the records of :func:`course_utils.ablation.run_ablation` (at least
    :data:`DEPTH_VARIANTS`); ``source`` names them in messages."""
    spec = _SPECS["depth"]
    problem = table_completeness(records, DEPTH_VARIANTS)
    if problem is not None:
        return spec.finding((False, f"{problem} in {source}; `make ablation` fills it in"))
    try:
        summary = summarize([r for r in records if r["variant"] in DEPTH_VARIANTS])
    except ValueError as error:
        return spec.finding((False, f"inconsistent records in {source}: {error}"))
    means = {name: summary[name].val_error.mean for name in DEPTH_VARIANTS}
    stds = {name: summary[name].val_error.std or 0.0 for name in DEPTH_VARIANTS}
    details = {
        "val_error_mean": means,
        "val_error_std": stds,
        "seeds": {name: len(summary[name].seeds) for name in DEPTH_VARIANTS},
    }
    return spec.finding(depth_criterion(means, stds), details)


def generalization_finding(
    model: nn.Module,
    heldout_train: ImageTensorDataset,
    heldout_val: ImageTensorDataset,
    seeds: Sequence[int] = (0, 1, 2),
    scratch_epochs: int = 20,
    progress: bool = True,
) -> Finding:
    """Tables 4-7 on held-out classes (notebook 08's protocol).

    ``heldout_train``/``heldout_val`` must be normalized with the statistics ``model`` was trained
    with (:func:`~course_utils.transfer.with_statistics`). Few-shot: :data:`SHOTS` images per class
    and ``seeds``, scored on 40 validation images per class, scratch runs of ``scratch_epochs``
    (batch 16, flips). Probes: :data:`PROBE_LAYERS` on 200 training and 100 validation images per class.
    Each of these numbers is capped at the images of the split's smallest class.
    """

    def per_class(dataset: ImageTensorDataset, wanted: int) -> int:
        return min(wanted, int(torch.bincount(dataset.labels, minlength=dataset.num_classes).min()))

    scoring = few_shot_subset(heldout_val, per_class(heldout_val, 40), seed=0)
    scratch_config = TrainConfig(epochs=scratch_epochs, batch_size=16, augment="flip", validate_every_epoch=False)
    comparison = few_shot_comparison(
        model, heldout_train, scoring, shots=SHOTS, seeds=seeds, scratch_config=scratch_config, progress=progress
    )
    accuracy = {method: comparison.accuracies(method) for method in (PRETRAINED, SCRATCH)}
    probe_train = few_shot_subset(heldout_train, per_class(heldout_train, 200), seed=0)
    probe_val = few_shot_subset(heldout_val, per_class(heldout_val, 100), seed=0)
    probes = probe_layers(model, probe_train, probe_val, PROBE_LAYERS, seed=0, progress=progress)
    details = {
        "classes": heldout_train.num_classes,
        "scoring_images": len(scoring),
        "probe_images": [len(probe_train), len(probe_val)],
        "pretrained": accuracy[PRETRAINED],
        "scratch": accuracy[SCRATCH],
        "scratch_epochs": scratch_epochs,
        "probes": probes,
    }
    return _SPECS["generalization"].finding(
        generalization_criterion(accuracy[PRETRAINED], accuracy[SCRATCH], probes), details
    )


# --------------------------------------------------------------------------------------------
# The scoreboard
# --------------------------------------------------------------------------------------------

_COLUMNS = (("finding", 14), ("paper", 34), ("ours", 50), ("criterion", 44), ("reproduced", 10))


def format_scoreboard(findings: Sequence[Finding]) -> str:
    """The findings as a text table (cells wrapped), one row per finding, then the count as
    the last line: ``findings reproduced: N of M``."""

    def row(cells: Sequence[str]) -> list[str]:
        wrapped = [textwrap.wrap(text, width) or [""] for text, (_, width) in zip(cells, _COLUMNS)]
        height = max(map(len, wrapped))
        return [
            " | ".join(
                f"{(lines[i] if i < len(lines) else ''):<{width}}" for lines, (_, width) in zip(wrapped, _COLUMNS)
            ).rstrip()
            for i in range(height)
        ]

    rule = "-+-".join("-" * width for _, width in _COLUMNS)
    lines = row([name for name, _ in _COLUMNS]) + [rule]
    for finding in findings:
        lines += row(
            [finding.name, finding.paper, finding.ours, finding.criterion, "yes" if finding.reproduced else "no"]
        ) + [rule]
    reproduced = sum(finding.reproduced for finding in findings)
    return "\n".join(lines + [f"findings reproduced: {reproduced} of {len(findings)}"])


def _model_mismatch(metadata: Mapping[str, Any], val: ImageTensorDataset) -> str | None:
    """Why the shipped model does not belong to the dataset version at hand, or ``None``."""
    trained_on = list(metadata.get("class_names", []))
    if trained_on != val.class_names:
        return (
            f"not measured: the shipped model was trained on {len(trained_on)} classes other than the "
            f"embedded dataset's {len(val.class_names)}; retrain it with `make checkpoints`"
        )
    statistics = [*metadata.get("mean", ()), *metadata.get("std", ())]
    if len(statistics) != 6 or any(abs(a - b) > 1e-6 for a, b in zip(statistics, [*val.mean, *val.std])):
        return (
            "not measured: the shipped model was trained on another version of the embedded dataset "
            "(its normalization differs); retrain it with `make checkpoints`"
        )
    return None


def _first_snapshot() -> Path | None:
    snapshots = sorted(CHECKPOINT_DIR.glob("epoch_*.pt"))
    return snapshots[0] if snapshots else None


def _table(path: Path, val: ImageTensorDataset) -> tuple[list[dict[str, Any]], str]:
    """The records of a results table validated on ``val``, and how to name the table in messages
    (an unreadable file gives no records; records made on other validation images are left out)."""
    try:
        source = str(path.relative_to(DATA_DIR.parent))
    except ValueError:
        source = str(path)
    try:
        records = load_results(path)
    except ValueError as error:
        return [], f"{source} ({error})"
    current = records_validated_on(records, val)
    if len(current) < len(records):
        source += (
            f" ({len(records) - len(current)} of its {len(records)} records were validated on other images "
            "than the current embedded dataset's and do not count: delete the file to regenerate it)"
        )
    return current, source


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.findings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as a JSON list to PATH")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 unless every finding is reproduced")
    parser.add_argument("--ablation", default=str(DATA_DIR / "ablation.json"), help="Table 3's results (JSON)")
    parser.add_argument(
        "--arch-selection", default=str(DATA_DIR / "arch_selection.json"), help="Fig 6's results (JSON)"
    )
    add_threads_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[Finding]:
    """Entry point of ``python -m course_utils.findings``: score all findings, print the table.

    Returns the findings; exits with status 1 under ``--strict`` unless all are reproduced.
    """
    from .data import load_dataset, load_embedded

    args = _parse_args(argv)
    set_torch_threads(args.threads)
    progress = not args.no_progress
    start = time.perf_counter()
    model, metadata = load_shipped_model("final")
    val = load_dataset("embedded", "val", progress=progress)
    mismatch = _model_mismatch(metadata, val)
    snapshot_path = _first_snapshot()

    def evolution() -> Finding:
        if snapshot_path is None:
            return _SPECS["evolution"].finding(
                (False, f"not measured: no snapshot epoch_*.pt in {CHECKPOINT_DIR}; `make checkpoints` writes them")
            )
        try:
            snapshot, _ = load_shipped_model(snapshot_path.stem)
        except CheckpointError as error:
            return _SPECS["evolution"].finding((False, f"not measured: {error}"))
        return evolution_finding(snapshot, model, val, snapshot_name=snapshot_path.stem)

    def generalization() -> Finding:
        heldout = [
            with_statistics(
                load_embedded(split, classes="heldout", progress=progress), metadata["mean"], metadata["std"]
            )
            for split in ("train", "val")
        ]
        heldout_train, heldout_val = heldout
        return generalization_finding(model, heldout_train, heldout_val, progress=progress)

    measured = {
        "hierarchy": lambda: hierarchy_finding(model, val, progress=progress),
        "evolution": evolution,
        "invariance": lambda: invariance_finding(model, val),
        "architecture": lambda: architecture_finding(*_table(Path(args.arch_selection), val)),
        "occlusion": lambda: occlusion_finding(model, val, progress=progress),
        "correspondence": lambda: correspondence_finding(model, val, progress=progress),
        "depth": lambda: depth_finding(*_table(Path(args.ablation), val)),
        "generalization": generalization,
    }
    uses_model = {"hierarchy", "evolution", "invariance", "occlusion", "correspondence", "generalization"}
    findings = []
    bar = progress_bar(measured.items(), desc="findings", progress=progress)
    for key, measure in bar:
        bar.set_postfix_str(_SPECS[key].name)
        if mismatch is not None and key in uses_model:
            findings.append(_SPECS[key].finding((False, mismatch)))
        else:
            findings.append(measure())
    bar.close()
    if args.json:
        with atomic_write(args.json, "w") as stream:
            json.dump([dataclasses.asdict(finding) for finding in findings], stream, indent=2)
    print(f"(measured in {time.perf_counter() - start:.0f} s)")
    print(format_scoreboard(findings))
    if args.strict and not all(finding.reproduced for finding in findings):
        sys.exit(1)
    return findings


if __name__ == "__main__":
    main()
