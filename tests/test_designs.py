"""Dataset designs: the registry, one small measured design end to end, the text the notebooks print."""

from __future__ import annotations

import dataclasses
import json
from functools import partial

import pytest

from course_utils import ablation, designs
from course_utils.ablation import DEPTH_VARIANTS
from course_utils.activations import receptive_field
from course_utils.data import embedded
from course_utils.data.embedded import DEFAULT_LAYOUT, EMBEDDED_CLASSES, IMAGE_SIZE
from course_utils.models import ZFNet, ZFNetConfig


def test_registry_names_the_shipped_design_and_every_design_builds():
    shipped = ZFNetConfig(**designs.DESIGNS["H"].model)  # H is what the course ships
    assert designs.DESIGNS["H"].layout == DEFAULT_LAYOUT and shipped.image_size == IMAGE_SIZE
    assert shipped == dataclasses.replace(ZFNetConfig(), image_size=IMAGE_SIZE)
    for name, design in designs.DESIGNS.items():
        assert design.name == name and design.description
        ZFNet(ZFNetConfig(num_classes=len(EMBEDDED_CLASSES), **design.model))


def test_design_g_gives_conv5_the_papers_share_of_the_image():
    """G's description: a conv5 unit sees 83 pixels, 130% of 64 and 65% of 128 (paper: 139 of 224)."""
    config = ZFNetConfig(**designs.DESIGNS["G"].model)
    size, _, _ = receptive_field(ZFNet(config), "conv5")
    assert config.image_size == 128 and size == 83
    assert round(100 * size / 64) == 130 and round(100 * size / 128) == 65
    assert "83 x 83 pixels, 130%" in designs.DESIGNS["G"].description


def test_design_h_gives_the_shallow_network_local_conv5_units_on_an_8_by_8_grid():
    """H's description: without conv3,4 + fc6,7 a conv5 unit sees 51 of 128 pixels, pool5 is 8 x 8."""
    design = designs.DESIGNS["H"]
    base = ZFNetConfig(**design.model)
    shallow = ZFNet(ZFNetConfig(**{**design.model, **ablation.ablation_variants(base)["no conv3,4 + fc6,7"]}))
    assert receptive_field(shallow, "conv5")[0] == 51 and base.image_size == 128
    assert shallow.fc8.in_features == 256 * 8 * 8
    assert "51 of 128 pixels" in design.description and "8 x 8 grid" in design.description


def test_measure_design_trains_four_runs_measures_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "STATS_IMAGES", 20)
    monkeypatch.setattr(designs, "load_embedded", partial(embedded.load_embedded, root=tmp_path, num_images=114))
    trained: list = []
    real_train = ablation.train
    monkeypatch.setattr(ablation, "train", lambda *args, **kwargs: trained.append(1) or real_train(*args, **kwargs))
    tiny = designs.Design(
        "T", "a tiny test design", DEFAULT_LAYOUT, {"conv_widths": (4, 4, 4, 4, 4), "fc_widths": (8, 8)}
    )
    result = designs.measure_design(tiny, train_per_class=2, epochs=1, root=tmp_path / "runs", progress=False)
    assert len(trained) == 4
    assert set(result["runs"]) == set(designs.DESIGN_VARIANTS)
    assert {"Fig 2 hierarchy", "Fig 5 invariance", "Fig 6 architecture", "Fig 7 occlusion"} < set(result["findings"])
    assert result["findings"]["Table 3 depth"]["reproduced"] is None
    collapse = result["runs"]["no conv3,4 + fc6,7"]["val_error"] - result["runs"]["full"]["val_error"]
    assert result["findings"]["Table 3 depth"]["details"]["collapse_points"] == pytest.approx(100 * collapse)
    assert len(list((tmp_path / "runs" / "T").glob("*.pt"))) == 4
    json.dumps(result)  # what main writes
    again = designs.measure_design(tiny, train_per_class=2, epochs=1, root=tmp_path / "runs", progress=False)
    assert len(trained) == 4 and again["runs"] == result["runs"]  # resumed, nothing retrained
    # Table 3's single removals on request: only those three are trained, the line lists them
    deeper = designs.measure_design(
        tiny, train_per_class=2, epochs=1, root=tmp_path / "runs", progress=False, depth_table=True
    )
    assert len(trained) == 7 and set(deeper["runs"]) == set(designs.DESIGN_VARIANTS + designs.SINGLE_REMOVALS)
    table3 = deeper["findings"]["Table 3 depth"]
    assert set(table3["details"]["points_over_full"]) == set(DEPTH_VARIANTS)
    for name in designs.SINGLE_REMOVALS:
        points = 100 * (deeper["runs"][name]["val_error"] - deeper["runs"]["full"]["val_error"])
        assert f"{name} {points:+.1f}" in table3["ours"]


def test_format_designs_prints_each_designs_verdict_and_refuses_unknown_findings():
    measured = {
        "X": {
            "description": "first try",
            "findings": {"Fig 5 invariance": {"reproduced": False, "ours": "scale 2.4x", "details": {}}},
        },
        "Y": {
            "description": "second try",
            "findings": {"Fig 5 invariance": {"reproduced": True, "ours": "scale 2.8x", "details": {}}},
        },
    }
    text = designs.format_designs("Fig 5 invariance", measured)
    assert "X (does not hold): scale 2.4x" in text and "Y (holds): scale 2.8x" in text
    assert "design: second try" in text
    with pytest.raises(ValueError, match="unknown finding"):
        designs.format_designs("Fig 9", measured)
    assert "no designs measured" in designs.format_designs("Fig 5 invariance", {})
