"""The reproduction scoreboard: criteria on hand-made numbers (both sides of every bound), findings
end to end on a tiny random network and a tiny embedded dataset, tables from hand-made records,
and the command line on missing tables."""

from __future__ import annotations

import json
import math

import pytest
import torch

from course_utils import findings
from course_utils.ablation import ablation_variants, dataset_fingerprint
from course_utils.architecture import FIRST_LAYER_VARIANTS
from course_utils.correspondence import PART_NAMES
from course_utils.data import load_embedded
from course_utils.findings import (
    ARCHITECTURE_VARIANTS,
    DEPTH_VARIANTS,
    PROBE_LAYERS,
    SYMMETRIC_CLASSES,
    Finding,
    architecture_criterion,
    architecture_finding,
    correspondence_criterion,
    correspondence_finding,
    depth_criterion,
    depth_finding,
    evolution_criterion,
    evolution_finding,
    format_scoreboard,
    generalization_criterion,
    generalization_finding,
    hierarchy_criterion,
    hierarchy_finding,
    invariance_criterion,
    invariance_finding,
    occlusion_criterion,
    occlusion_finding,
    occlusion_images,
    table_completeness,
)
from course_utils.models import ZFNet, ZFNetConfig
from tests.conftest import colour_dataset

# --------------------------------------------------------------------------------------------
# Criteria on hand-made numbers
# --------------------------------------------------------------------------------------------


def purity(conv1: float, conv3: float, conv5: float) -> dict[str, float]:
    return {"conv1": conv1, "conv2": (conv1 + conv3) / 2, "conv3": conv3, "conv4": (conv3 + conv5) / 2, "conv5": conv5}


def test_hierarchy_criterion_bounds():
    assert hierarchy_criterion(0.30, purity(0.5, 0.6, 0.8))[0]  # both bounds exactly met
    passed, text = hierarchy_criterion(0.135, purity(0.5, 0.7, 0.9))
    assert passed and "13.5%" in text and "conv5/conv1 = 1.80" in text
    assert not hierarchy_criterion(0.3001, purity(0.5, 0.7, 0.9))[0]  # noisy conv1 filters
    assert not hierarchy_criterion(0.2, purity(0.5, 0.7, 0.79))[0]  # conv5 < 1.6 x conv1
    assert not hierarchy_criterion(0.2, purity(0.5, 0.5, 0.9))[0]  # conv3 does not rise above conv1
    assert not hierarchy_criterion(0.2, purity(0.5, 0.95, 0.9))[0]  # falls from conv3 to conv5
    with pytest.raises(ValueError, match="conv3"):
        hierarchy_criterion(0.2, {"conv1": 0.5, "conv5": 0.9})


def test_evolution_criterion_bounds():
    assert evolution_criterion({"conv1": 0.9, "conv3": 0.7, "conv5": 0.6})[0]  # drop exactly 0.3
    assert not evolution_criterion({"conv1": 0.9, "conv3": 0.7, "conv5": 0.61})[0]
    assert not evolution_criterion({"conv1": 0.9, "conv3": 0.5, "conv5": 0.55})[0]  # does not fall conv3 -> conv5
    assert not evolution_criterion({"conv1": 0.9, "conv3": 0.95, "conv5": 0.4})[0]


STEPS = {"translate": (0.75, 0.3), "scale": (0.5, 0.1), "rotate": (0.8, 0.2)}


def test_invariance_criterion_bounds():
    passed, text = invariance_criterion(STEPS, 0.9, 0.49)  # 2.5x exactly, P 0.9 exactly
    assert passed and "translate 0.75 vs 0.30 (2.5x: yes)" in text
    assert not invariance_criterion({**STEPS, "scale": (0.5, 0.21)}, 0.95, 0.2)[0]
    assert not invariance_criterion({**STEPS, "rotate": (0.8, 0.33)}, 0.95, 0.2)[0]
    assert not invariance_criterion(STEPS, 0.89, 0.2)[0]  # symmetric classes not kept
    assert not invariance_criterion(STEPS, 0.95, 0.5)[0]  # upright classes still recognised
    passed, text = invariance_criterion(STEPS, math.nan, 0.2)  # no symmetric images measured
    assert not passed and "symmetric classes n/a (no images)" in text
    with pytest.raises(ValueError, match="rotate"):
        invariance_criterion({"translate": (1, 0.1), "scale": (1, 0.1)}, 0.95, 0.2)


def variant(val_error: float, dead_fraction: float, aliased_energy: float, rms_ratio: float) -> dict[str, float]:
    return {
        "val_error": val_error,
        "dead_fraction": dead_fraction,
        "aliased_energy": aliased_energy,
        "rms_ratio": rms_ratio,
    }


def test_architecture_criterion_bounds():
    unclipped, alexnet, zf = variant(0.3, 0.0, 0.2, 3.0), variant(0.35, 0.10, 0.4, 1.5), variant(0.25, 0.05, 0.2, 1.5)
    assert architecture_criterion(unclipped, alexnet, zf)[0]
    assert not architecture_criterion(variant(0.3, 0.0, 0.2, 2.99), alexnet, zf)[0]  # (a) no filter dominates
    assert not architecture_criterion(unclipped, variant(0.35, 0.09, 0.4, 1.5), zf)[0]  # (b) too few dead
    assert not architecture_criterion(unclipped, variant(0.35, 0.2, 0.2, 1.5), zf)[0]  # (b) aliases no more
    assert not architecture_criterion(unclipped, alexnet, variant(0.25, 0.10, 0.2, 1.5))[0]  # (c) as many dead
    assert not architecture_criterion(unclipped, alexnet, variant(0.30, 0.05, 0.2, 1.5))[0]  # (c) ties (a)'s error
    with pytest.raises(ValueError, match="rms_ratio"):
        architecture_criterion({"val_error": 0.3}, alexnet, zf)


def test_occlusion_criterion_bounds():
    assert occlusion_criterion([0.3] * 18 + [0.0] * 2, [0.01] * 20)[0]  # 18 of 20 = 90%
    passed, text = occlusion_criterion([0.3] * 17 + [0.0] * 3, [0.01] * 20)
    assert not passed and "17 of 20" in text
    assert not occlusion_criterion([0.3] * 19, [0.0] * 19)[0]  # fewer than 20 images
    assert occlusion_criterion([0.3] * 18 + [0.4] * 2, [0.0] * 18 + [math.nan] * 2)[0]  # 18 of 20 still enough
    assert not occlusion_criterion([0.3] * 17 + [0.4] * 3, [0.0] * 17 + [math.nan] * 3)[0]  # NaN counts against
    with pytest.raises(ValueError, match="one value per image"):
        occlusion_criterion([0.3] * 20, [0.0] * 19)


def test_correspondence_criterion_bounds():
    random5, random7 = [0.1] * 10, [0.1] * 10
    assert correspondence_criterion([0.08] * 10, random5, [0.09] * 10, random7)[0]  # 0.8 x random exactly
    assert not correspondence_criterion([0.081] * 10, random5, [0.09] * 10, random7)[0]
    mostly = [0.05] * 8 + [0.11] * 2  # lower in 8 of 10 draws
    assert correspondence_criterion(mostly, random5, [0.09] * 10, random7)[0]
    assert not correspondence_criterion([0.05] * 7 + [0.11] * 3, random5, [0.09] * 10, random7)[0]
    assert not correspondence_criterion([0.08] * 10, random5, [0.08] * 10, random7)[0]  # same gap at layer 7
    assert not correspondence_criterion([0.08] * 10, random5, [0.07] * 10, random7)[0]  # larger gap at layer 7
    with pytest.raises(ValueError, match="same number of draws"):
        correspondence_criterion([0.08] * 10, random5, [0.09] * 9, random7)


DEPTH_MEANS = {"full": 0.20, "no conv3,4": 0.25, "no fc7": 0.19, "no fc6,7": 0.24, "no conv3,4 + fc6,7": 0.30}
DEPTH_STDS = {"full": 0.02, "no conv3,4": 0.01, "no fc7": 0.01, "no fc6,7": 0.01, "no conv3,4 + fc6,7": 0.03}


def test_depth_criterion_bounds():
    assert tuple(DEPTH_MEANS) == DEPTH_VARIANTS and set(DEPTH_VARIANTS) <= set(ablation_variants())
    passed, text = depth_criterion(DEPTH_MEANS, DEPTH_STDS)  # +10 over full, +5 over the worst single
    assert passed and "+10.0 points" in text
    assert not depth_criterion({**DEPTH_MEANS, "no conv3,4 + fc6,7": 0.299}, DEPTH_STDS)[0]
    assert not depth_criterion({**DEPTH_MEANS, "no conv3,4": 0.251}, DEPTH_STDS)[0]  # collapse < single + 5
    assert not depth_criterion({**DEPTH_MEANS, "no fc7": 0.2501, "no conv3,4 + fc6,7": 0.40}, DEPTH_STDS)[0]
    assert depth_criterion(DEPTH_MEANS, {**DEPTH_STDS, "no conv3,4 + fc6,7": 0.0333})[0]  # 3 std = 0.0999 < 0.1
    assert not depth_criterion(DEPTH_MEANS, {**DEPTH_STDS, "no conv3,4 + fc6,7": 0.034})[0]
    assert not depth_criterion(DEPTH_MEANS, {**DEPTH_STDS, "full": 0.034})[0]
    with pytest.raises(ValueError, match="no fc7"):
        depth_criterion({name: value for name, value in DEPTH_MEANS.items() if name != "no fc7"}, DEPTH_STDS)


PROBES = {"relu1": 0.4, "relu2": 0.5, "relu3": 0.6, "relu4": 0.65, "relu5": 0.7, "relu6": 0.68, "relu7": 0.66}


def test_generalization_criterion_bounds():
    pretrained = {1: [0.5, 0.5, 0.5], 5: [0.6] * 3, 20: [0.7] * 3}
    scratch = {1: [0.2] * 3, 5: [0.3] * 3, 20: [0.69, 0.69, 0.69]}
    assert generalization_criterion(pretrained, scratch, PROBES)[0]
    assert not generalization_criterion(pretrained, {**scratch, 20: [0.7] * 3}, PROBES)[0]  # a tie is no win
    passed, text = generalization_criterion({**pretrained, 5: [0.9, 0.9]}, scratch, PROBES)
    assert not passed and "5/class: 2 seeds" in text  # too few seeds
    assert not generalization_criterion({1: [0.5] * 3, 5: [0.6] * 3}, scratch, PROBES)[0]  # 20/class missing
    assert not generalization_criterion(pretrained, scratch, {**PROBES, "relu4": 0.71})[0]  # peaks at layer 4
    assert not generalization_criterion(pretrained, scratch, {**PROBES, "relu4": 0.7})[0]  # a tie: the lower layer
    assert not generalization_criterion(pretrained, scratch, {**PROBES, "relu7": 0.5})[0]  # layer 7 = layer 2
    with pytest.raises(ValueError, match="relu6"):
        generalization_criterion(pretrained, scratch, {k: v for k, v in PROBES.items() if k != "relu6"})


# --------------------------------------------------------------------------------------------
# Tables: hand-made records
# --------------------------------------------------------------------------------------------


def depth_records(means=DEPTH_MEANS, seeds=(0, 1, 2)) -> list[dict]:
    offsets = (-0.01, 0.0, 0.01)
    return [
        {
            "variant": name,
            "seed": seed,
            "parameters": 100 + index,
            "train_error": 0.1,
            "val_error": mean + offsets[seed % 3],
            "seconds": 1.0,
        }
        for index, (name, mean) in enumerate(means.items())
        for seed in seeds
    ]


def test_depth_finding_from_records():
    collapse = {**DEPTH_MEANS, "no conv3,4 + fc6,7": 0.45}
    finding = depth_finding(depth_records(collapse) + depth_records({"fc6,7 wide (x2)": 0.1}))
    assert finding.reproduced and finding.name == "Table 3 depth"
    assert finding.details["val_error_mean"]["no conv3,4 + fc6,7"] == pytest.approx(0.45)
    assert finding.details["val_error_std"]["full"] == pytest.approx(0.01)
    json.dumps(finding.details)
    assert depth_finding(depth_records()).reproduced  # the boundary numbers, as means over seeds
    no_collapse = depth_finding(depth_records({**DEPTH_MEANS, "no conv3,4 + fc6,7": 0.19}))
    assert not no_collapse.reproduced and "-1.0 points" in no_collapse.ours


def test_depth_finding_reports_incomplete_tables():
    records = [r for r in depth_records() if not (r["variant"] == "full" and r["seed"] == 2)]
    finding = depth_finding(records, source="ablation.json")
    assert not finding.reproduced
    assert finding.ours.startswith("incomplete: 14 of 15 runs (full: 2 seeds)") and "ablation.json" in finding.ours
    missing = depth_finding([r for r in depth_records() if r["variant"] != "no fc7"])
    assert "incomplete: 12 of 15 runs (no fc7: 0 seeds)" in missing.ours
    assert depth_finding([]).ours.startswith("incomplete: 0 of 15 runs")
    mixed = depth_records()
    mixed[1]["parameters"] = 7  # one variant's runs from two architectures
    assert "different parameter counts" in depth_finding(mixed).ours


def arch_records(first_layer: bool = True) -> list[dict]:
    numbers = {  # (val error, dead fraction, aliased energy, largest RMS / median RMS)
        ARCHITECTURE_VARIANTS[0]: (0.30, 0.0, 0.25, 4.0),
        ARCHITECTURE_VARIANTS[1]: (0.35, 0.25, 0.45, 1.2),
        ARCHITECTURE_VARIANTS[2]: (0.25, 0.0, 0.2, 1.1),
    }
    records = []
    for name, (error, dead, aliased, ratio) in numbers.items():
        for seed in range(3):
            record = {
                "variant": name,
                "seed": seed,
                "parameters": 10,
                "train_error": 0.1,
                "val_error": error,
                "seconds": 1.0,
            }
            if first_layer:
                record["first_layer"] = {
                    "dead_fraction": dead,
                    "aliased_energy": aliased,
                    "rms_max": 0.1 * ratio,
                    "rms_median": 0.1,
                }
            records.append(record)
    return records


def test_architecture_finding_from_records():
    assert set(ARCHITECTURE_VARIANTS) == set(FIRST_LAYER_VARIANTS)
    assert FIRST_LAYER_VARIANTS[ARCHITECTURE_VARIANTS[0]]["train"] == {"max_filter_rms": None}
    finding = architecture_finding(arch_records())
    assert finding.reproduced, finding.ours
    assert finding.details["variants"][ARCHITECTURE_VARIANTS[0]]["rms_ratio"] == pytest.approx(4.0)
    records = arch_records()
    for record in records[3:6]:
        record["first_layer"]["dead_fraction"] = 0.05  # (b) without dead filters
    assert not architecture_finding(records).reproduced
    old = architecture_finding(arch_records(first_layer=False), source="arch.json")  # the records before this table
    assert not old.reproduced and old.ours.startswith("incomplete: 0 of 9 runs")
    assert "without first_layer" in old.ours and "arch.json" in old.ours


def test_table_completeness_counts_at_most_min_seeds_per_variant():
    records = [{"variant": "a", "seed": seed, "val_error": 0.1} for seed in range(5)]
    records += [{"variant": "b", "seed": 0, "val_error": 0.1}, {"variant": "b", "seed": 0, "val_error": 0.2}]
    assert table_completeness(records, ["a"]) is None
    assert table_completeness(records, ["a", "b"]) == "incomplete: 4 of 6 runs (b: 1 seed)"
    assert table_completeness(records, ["a", "b"], min_seeds=1) is None


# --------------------------------------------------------------------------------------------
# Findings end to end: a tiny random network on a tiny embedded dataset
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_val(tmp_path_factory):
    return load_embedded("val", root=tmp_path_factory.mktemp("embedded"), num_images=80, progress=False)


def tiny_model(dataset, seed: int = 0, always: int | None = None) -> ZFNet:
    """A random ZFNet; with ``always`` it predicts that class for every image (fc8: zero weights, one bias)."""
    torch.manual_seed(seed)
    model = ZFNet(
        ZFNetConfig(
            conv_widths=(4, 6, 6, 6, 4),
            fc_widths=(8, 8),
            num_classes=dataset.num_classes,
            image_size=dataset.images.shape[-1],
        )
    ).eval()
    if always is not None:
        with torch.no_grad():
            model.fc8.weight.zero_()
            model.fc8.bias.zero_()
            model.fc8.bias[always] = 10.0
    return model


def check_finding(finding: Finding, name: str) -> None:
    assert isinstance(finding, Finding) and finding.name == name
    assert isinstance(finding.reproduced, bool) and finding.ours and finding.paper and finding.criterion
    json.dumps(finding.details)  # JSON-serializable
    assert name in finding.format() and "criterion:" in finding.format()


def test_hierarchy_and_evolution_findings_on_a_tiny_network(tiny_val):
    model = tiny_model(tiny_val)
    finding = hierarchy_finding(model, tiny_val, progress=False)
    check_finding(finding, "Fig 2 hierarchy")
    assert set(finding.details["purity"]) == set(findings.CONV_LAYERS)
    assert all(1 / 9 <= value <= 1 for value in finding.details["purity"].values())
    assert 0 <= finding.details["aliased_energy"] <= 1
    same = evolution_finding(model, model, tiny_val, num_images=20)
    check_finding(same, "Fig 4 evolution")
    assert all(value == pytest.approx(1.0) for value in same.details["cka"].values())
    assert not same.reproduced  # nothing changed: CKA 1 everywhere does not fall with depth
    other = evolution_finding(tiny_model(tiny_val, seed=1), model, tiny_val, num_images=20)
    assert all(0 <= value < 1 for value in other.details["cka"].values())


def test_invariance_and_occlusion_findings_on_a_tiny_network(tiny_val):
    label = int(tiny_val.labels[0])
    model = tiny_model(tiny_val, always=label)  # correct exactly on the images of the first image's class
    finding = invariance_finding(model, tiny_val, per_class=2, search=80)
    check_finding(finding, "Fig 5 invariance")
    expected = min(2, int((tiny_val.labels == label).sum()))
    assert finding.details["images"] == expected
    assert finding.details["symmetric_images"] == (expected if tiny_val.class_names[label] in SYMMETRIC_CLASSES else 0)
    assert set(finding.details["step_distances"]) == {"translate", "scale", "rotate"}
    rows = occlusion_images(model, tiny_val, count=3, search=80)
    assert rows.dtype == torch.long and (tiny_val.labels[rows] == label).all()
    assert rows.tolist() == torch.nonzero(tiny_val.labels == label).flatten()[:3].tolist()
    finding = occlusion_finding(model, tiny_val, count=3, progress=False)
    check_finding(finding, "Fig 7 occlusion")
    assert finding.details["images"] == rows.tolist() and len(finding.details["object_drops"]) == len(rows)
    assert not finding.reproduced  # 3 images, fewer than the 20 of the criterion


def test_occlusion_images_spread_over_classes(tiny_val):
    model = tiny_model(tiny_val)
    rows = occlusion_images(model, tiny_val, count=20, search=80)
    predicted = model(tiny_val.normalize(tiny_val.images[rows])).argmax(1) if len(rows) else rows
    assert (predicted == tiny_val.labels[rows]).all()
    labels = tiny_val.labels[rows].tolist()
    classes = len(set(labels))
    assert labels[:classes] == sorted(set(labels))  # each class's first image, in class order, comes first


def test_correspondence_finding_on_a_tiny_network(tiny_val):
    finding = correspondence_finding(tiny_model(tiny_val), tiny_val, draws=3, num_images=2, progress=False)
    check_finding(finding, "Table 1 correspondence")
    assert set(finding.details["parts_per_draw"]) == {"pool5", "relu7"}
    assert len(finding.details["parts_per_draw"]["pool5"]) == 3
    assert {f"{part} pool5" for part in PART_NAMES} <= set(finding.details["mean"])


def test_generalization_finding_on_a_tiny_network():
    train_pool, val_set = colour_dataset(75, seed=0), colour_dataset(45, seed=1)  # 25 and 15 images per class
    model = ZFNet(ZFNetConfig(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8), num_classes=5, image_size=32)).eval()
    finding = generalization_finding(model, train_pool, val_set, seeds=(0, 1, 2), scratch_epochs=1, progress=False)
    check_finding(finding, "Tables 4-7 generalization")
    assert set(finding.details["probes"]) == set(PROBE_LAYERS)
    assert {shots: len(seeds) for shots, seeds in finding.details["scratch"].items()} == {"1": 3, "5": 3, "20": 3}
    assert finding.details["scoring_images"] == 45 and finding.details["probe_images"] == [75, 45]  # capped


# --------------------------------------------------------------------------------------------
# The scoreboard and the command line
# --------------------------------------------------------------------------------------------


def test_format_scoreboard_ends_with_the_count():
    rows = [Finding("A", "paper says", "we see " * 20, "must hold", True), Finding("B", "p", "o", "c", False)]
    text = format_scoreboard(rows)
    assert text.splitlines()[-1] == "findings reproduced: 1 of 2"
    assert "| yes" in text and "| no" in text and max(map(len, text.splitlines())) <= 170


def test_main_reports_missing_tables_and_another_model_without_crashing(tiny_val, tmp_path, monkeypatch, capsys):
    model = tiny_model(tiny_val)
    metadata = {"class_names": ["something", "else"], "mean": tiny_val.mean, "std": tiny_val.std}
    monkeypatch.setattr(findings, "load_shipped_model", lambda name: (model, metadata))
    monkeypatch.setattr("course_utils.data.load_dataset", lambda name, split, **options: tiny_val)
    out = tmp_path / "rows.json"
    arguments = [
        "--ablation",
        str(tmp_path / "none.json"),
        "--arch-selection",
        str(tmp_path / "none.json"),
        "--threads",
        "1",
        "--no-progress",
        "--json",
        str(out),
    ]
    rows = findings.main(arguments)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "findings reproduced: 0 of 8" and len(rows) == 8
    assert "trained on 2 classes other than" in rows[0].ours and "incomplete: 0 of 15 runs" in rows[6].ours
    written = json.loads(out.read_text())
    assert [row["name"] for row in written] == [row.name for row in rows]
    assert set(written[0]) == {"name", "paper", "ours", "criterion", "reproduced", "details"}
    with pytest.raises(SystemExit) as exit_info:
        findings.main(arguments + ["--strict"])
    assert exit_info.value.code == 1
    # a table counts only the records validated on the current dataset's validation images
    records = depth_records({**DEPTH_MEANS, "no conv3,4 + fc6,7": 0.45})
    for record in records:
        record["recipe"] = {"val_data": dataset_fingerprint(tiny_val)}
    stale = [{**record, "recipe": {"val_data": "another"}} for record in depth_records()[:4]]
    (tmp_path / "ablation.json").write_text(json.dumps(records + stale))
    rows = findings.main(arguments[:1] + [str(tmp_path / "ablation.json")] + arguments[2:])
    assert rows[6].reproduced and capsys.readouterr().out.splitlines()[-1] == "findings reproduced: 1 of 8"
    (tmp_path / "ablation.json").write_text(json.dumps(records[:14] + stale))
    rows = findings.main(arguments[:1] + [str(tmp_path / "ablation.json")] + arguments[2:])
    assert "incomplete: 14 of 15 runs" in rows[6].ours and "4 of its 18 records were validated on other" in rows[6].ours
