"""course_utils.data.class_family: the embedded dataset's families of classes."""

from __future__ import annotations

import pytest

from course_utils.data import FAMILIES, class_family
from course_utils.data.embedded import EMBEDDED_CLASSES, FACE_CLASSES, HELDOUT_CLASSES, SYMMETRIC_CLASSES


def test_every_embedded_class_has_one_of_the_families():
    families = [class_family(name) for name in EMBEDDED_CLASSES]
    assert set(families) == set(FAMILIES)
    assert [name for name, family in zip(EMBEDDED_CLASSES, families) if family == "face"] == list(FACE_CLASSES)
    assert {name for name, family in zip(EMBEDDED_CLASSES, families) if family == "symmetric"} == SYMMETRIC_CLASSES
    assert {class_family(name) for name in HELDOUT_CLASSES} <= set(FAMILIES) - {"symmetric"}


@pytest.mark.parametrize(
    "name, family",
    [
        ("face:round-eyes/none-ears/button", "face"),
        ("truck:two-wheels/round-windows", "vehicle"),
        ("bus:three-wheels/square-windows", "vehicle"),
        ("house:flat-roof/square-windows", "house"),
        ("conifer", "plant"),
        ("mushroom", "plant"),
        ("star", "symmetric"),
        ("striped_disc", "symmetric"),
    ],
)
def test_class_family_reads_the_name(name, family):
    assert class_family(name) == family


@pytest.mark.parametrize("bad", ["", "boat:two-sails", None])
def test_class_family_refuses_unknown_names(bad):
    with pytest.raises(ValueError):
        class_family(bad)
