"""The procedurally generated dataset: determinism, annotations, splits and its hashed cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from course_utils.data import embedded
from course_utils.data.core import ImageTensorDataset, atomic_write, load_array_cache
from course_utils.data.embedded import (
    EMBEDDED_CLASSES,
    FACE_CLASSES,
    HELDOUT_CLASSES,
    SYMMETRIC_CLASSES,
    Layout,
    generate_shapes,
    load_embedded,
    split_seed,
)

ARRAY_KEYS = ("images", "labels", "parts", "part_radius", "masks")
S = embedded.IMAGE_SIZE  # side of the shipped pictures


def assert_same_arrays(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    for key in ARRAY_KEYS:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)  # NaN == NaN here


@pytest.fixture(scope="module")
def shapes() -> dict[str, np.ndarray]:
    """Five main-class images of each class (60 faces)."""
    return generate_shapes(5 * len(EMBEDDED_CLASSES), seed=7, progress=False)


def is_face(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, [EMBEDDED_CLASSES.index(name) for name in FACE_CLASSES])


@pytest.fixture
def few_stats_images(monkeypatch: pytest.MonkeyPatch) -> int:
    """Take the normalization statistics from 20 training images to keep cache tests fast."""
    monkeypatch.setattr(embedded, "STATS_IMAGES", 20)
    return 20


def test_same_seed_same_bytes_other_seed_other_images():
    first = generate_shapes(30, seed=3, progress=False)
    assert_same_arrays(first, generate_shapes(30, seed=3, progress=False))
    other = generate_shapes(30, seed=4, progress=False)
    assert not np.array_equal(first["images"], other["images"])
    assert not np.array_equal(first["labels"], other["labels"])


def test_images_do_not_depend_on_chunking_or_workers():
    one_process = generate_shapes(30, seed=5, progress=False, workers=1)
    two_workers = generate_shapes(46, seed=5, progress=False, workers=2)  # chunks of 23 images
    assert_same_arrays(one_process, {key: value[:30] for key, value in two_workers.items()})


def test_shapes_and_dtypes(shapes):
    n = 5 * len(EMBEDDED_CLASSES)
    assert shapes["images"].shape == (n, 3, S, S) and shapes["images"].dtype == np.uint8
    assert shapes["labels"].shape == (n,) and shapes["labels"].dtype == np.int64
    assert shapes["parts"].shape == (n, 3, 2) and shapes["parts"].dtype == np.float32
    assert shapes["part_radius"].shape == (n,) and shapes["part_radius"].dtype == np.float32
    assert shapes["masks"].shape == (n, S, S) and shapes["masks"].dtype == bool
    small = generate_shapes(4, seed=0, image_size=32, progress=False)
    assert small["images"].shape == (4, 3, 32, 32) and small["masks"].shape == (4, 32, 32)


def test_every_block_of_len_classes_holds_each_class_once(shapes):
    blocks = shapes["labels"].reshape(-1, len(EMBEDDED_CLASSES))
    assert (np.sort(blocks, axis=1) == np.arange(len(EMBEDDED_CLASSES))).all()
    heldout = generate_shapes(len(HELDOUT_CLASSES), seed=0, classes="heldout", progress=False)
    assert sorted(heldout["labels"]) == list(range(len(HELDOUT_CLASSES)))


def grow(masks: np.ndarray, steps: int = 1) -> np.ndarray:
    """Dilate boolean masks (N, H, W) by ``steps`` pixels (4-neighbourhood)."""
    for _ in range(steps):
        padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
        masks = masks | padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    return masks


@pytest.mark.parametrize("classes", ["main", "heldout"])
def test_mask_outline_is_where_the_image_has_strong_edges(shapes, classes):
    """The mask is the object: the image's edges are stronger along its outline than along the
    same outline moved elsewhere (where the clutter and other objects' fragments are)."""
    data = shapes if classes == "main" else generate_shapes(50, seed=7, classes=classes, progress=False)
    masks = data["masks"]
    luma = np.tensordot(data["images"].astype(np.float64), [0.299, 0.587, 0.114], axes=([1], [0]))
    rows_gradient, cols_gradient = np.gradient(luma, axis=(1, 2))
    edge_strength = np.hypot(rows_gradient, cols_gradient)
    outline = masks & grow(~masks)
    moved = np.roll(outline, (21, 27), axis=(1, 2))
    ratios = np.array(
        [strength[here].mean() / strength[there].mean() for strength, here, there in zip(edge_strength, outline, moved)]
    )
    assert (ratios > 1.5).mean() >= 0.9, np.sort(ratios)[:10]


def test_every_image_has_an_object_mask(shapes):
    """Objects are large, as in object-centred photos, but leave room for their surroundings."""
    area = shapes["masks"].sum(axis=(1, 2))
    assert (area >= 0.015 * S * S).all() and (area <= 0.7 * S * S).all()


def test_face_parts_inside_image_and_object(shapes):
    faces = is_face(shapes["labels"])
    parts, radius = shapes["parts"][faces], shapes["part_radius"][faces]
    assert faces.sum() == 5 * len(FACE_CLASSES)
    assert np.isfinite(parts).all() and (parts >= 0).all() and (parts <= S - 1).all()
    assert ((radius > 1.5 * S / 64) & (radius < 8 * S / 64)).all()  # parts scale with the image
    rows, cols = np.mgrid[0:S, 0:S]
    for mask, points, r in zip(shapes["masks"][faces], parts, radius):
        for y, x in points:  # (y, x); every pixel within part_radius of a part belongs to the object
            assert mask[(cols - x) ** 2 + (rows - y) ** 2 <= r**2].all()


def test_left_eye_is_on_the_image_left_and_the_nose_on_the_midline(shapes):
    parts = shapes["parts"][is_face(shapes["labels"])]  # (y, x)
    left_eye, right_eye, nose = parts[:, 0], parts[:, 1], parts[:, 2]
    assert (left_eye[:, 1] < right_eye[:, 1]).all()  # smaller x
    # Faces are mirror-symmetric: the nose is equally far from both eyes.
    np.testing.assert_allclose(
        np.linalg.norm(nose - left_eye, axis=1), np.linalg.norm(nose - right_eye, axis=1), rtol=1e-4
    )
    # Rotated faces exist (the definition is tested under rotation, not only upright).
    tilt = np.degrees(np.arctan2(right_eye[:, 0] - left_eye[:, 0], right_eye[:, 1] - left_eye[:, 1]))
    assert np.abs(tilt).max() > 10 and np.abs(tilt).max() <= embedded._MAX_TILT_DEG + 0.01


def test_face_parts_follow_the_head_pose_seen_in_the_mask(shapes):
    """The head is mirror-symmetric about the line through the nose across the eyes' axis: the
    mask reflected about that line covers itself (unless an occluder or the border cut it)."""
    faces = is_face(shapes["labels"])
    overlaps = []
    parts_xy = shapes["parts"][faces][..., ::-1]  # (y, x) -> (x, y) for the geometry below
    for mask, (left_eye, right_eye, nose) in zip(shapes["masks"][faces], parts_xy):
        across = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye)
        rows, cols = np.nonzero(mask)
        points = np.stack([cols, rows], axis=1).astype(np.float64)
        reflected = points - 2 * ((points - nose) @ across)[:, None] * across
        x, y = np.round(reflected).astype(int).T
        inside = (x >= 0) & (x < S) & (y >= 0) & (y < S)
        overlaps.append(mask[y[inside], x[inside]].sum() / len(points))
        between_eyes = (left_eye + right_eye) / 2
        assert (nose - between_eyes) @ np.array([-across[1], across[0]]) > 0  # the nose is below the eyes
    assert np.mean(np.array(overlaps) > 0.9) >= 0.7, np.sort(overlaps)


def test_non_faces_have_no_parts(shapes):
    others = ~is_face(shapes["labels"])
    assert np.isnan(shapes["parts"][others]).all()
    assert np.isnan(shapes["part_radius"][others]).all()


def test_heldout_classes_are_disjoint_from_training_classes():
    assert len(EMBEDDED_CLASSES) >= 30 and len(HELDOUT_CLASSES) >= 5
    assert len(FACE_CLASSES) >= 10 and SYMMETRIC_CLASSES <= set(EMBEDDED_CLASSES)
    assert not set(EMBEDDED_CLASSES) & set(HELDOUT_CLASSES)
    main = generate_shapes(10, seed=0, progress=False)
    heldout = generate_shapes(10, seed=0, classes="heldout", progress=False)
    assert heldout["labels"].max() == len(HELDOUT_CLASSES) - 1
    assert not np.array_equal(main["images"], heldout["images"])


def test_splits_have_independent_seeds():
    seeds = {split: split_seed(0, split) for split in ("train", "val", "test")}
    assert len(set(seeds.values())) == 3
    assert seeds == {split: split_seed(0, split) for split in ("train", "val", "test")}
    assert split_seed(1, "train") not in seeds.values()


def test_load_embedded_matches_generator_and_train_statistics(tmp_path, few_stats_images):
    train = load_embedded("train", root=tmp_path, num_images=few_stats_images, progress=False)
    val = load_embedded("val", root=tmp_path, num_images=12, progress=False)
    assert isinstance(val, ImageTensorDataset) and val.class_names == list(EMBEDDED_CLASSES)
    expected = generate_shapes(12, split_seed(0, "val"), progress=False)
    assert torch.equal(val.images, torch.from_numpy(expected["images"]))
    assert torch.equal(val.labels, torch.from_numpy(expected["labels"]))
    assert torch.equal(val.extras["masks"], torch.from_numpy(expected["masks"]))
    assert torch.equal(val.extras["parts"].isnan(), torch.from_numpy(np.isnan(expected["parts"])))
    assert set(val.extras) == {"parts", "part_radius", "masks"}
    # Both splits use the statistics of the training images (here all of them).
    pixels = train.images.double().div(255).transpose(0, 1).reshape(3, -1)
    np.testing.assert_allclose(train.mean, pixels.mean(1).numpy(), atol=1e-9)
    np.testing.assert_allclose(train.std, pixels.std(1, unbiased=False).numpy(), atol=1e-9)
    assert val.mean == train.mean and val.std == train.std


def test_cache_roundtrip_reads_without_generating(tmp_path, few_stats_images, monkeypatch):
    first = load_embedded("test", root=tmp_path, seed=2, num_images=10, progress=False)
    path = tmp_path / f"embedded-main-test-seed2-n10-v{embedded.GENERATOR_VERSION}.npz"
    assert path.exists() and path.with_suffix(".json").exists()

    def no_generation(*args, **kwargs):
        raise AssertionError("a valid cache must be read, not regenerated")

    monkeypatch.setattr(embedded, "generate_shapes", no_generation)
    again = load_embedded("test", root=tmp_path, seed=2, num_images=10, progress=False)
    assert torch.equal(first.images, again.images) and torch.equal(first.extras["masks"], again.extras["masks"])
    assert (first.mean, first.std) == (again.mean, again.std)


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "drop_sidecar"])
def test_corrupt_or_partial_cache_is_rebuilt(tmp_path, few_stats_images, damage):
    original = load_embedded("val", root=tmp_path, num_images=10, progress=False)
    path = next(tmp_path.glob("embedded-main-val-*.npz"))
    data = bytearray(path.read_bytes())
    if damage == "flip_bytes":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
    else:
        path.with_suffix(".json").unlink()
    with pytest.warns(RuntimeWarning, match="regenerating"):
        rebuilt = load_embedded("val", root=tmp_path, num_images=10, progress=False)
    assert torch.equal(rebuilt.images, original.images)
    info = json.loads(path.with_suffix(".json").read_text())
    del info["sha256"]
    load_array_cache(path, info)  # the rebuilt file passes the hash check


def test_cache_made_with_other_settings_is_not_used(tmp_path, few_stats_images):
    load_embedded("val", root=tmp_path, seed=0, num_images=10, progress=False)
    seed0 = next(tmp_path.glob("embedded-main-val-seed0-*.npz"))
    seed1 = tmp_path / seed0.name.replace("seed0", "seed1")
    shutil.copy(seed0, seed1)
    shutil.copy(seed0.with_suffix(".json"), seed1.with_suffix(".json"))
    with pytest.warns(RuntimeWarning, match="other settings"):
        loaded = load_embedded("val", root=tmp_path, seed=1, num_images=10, progress=False)
    expected = generate_shapes(10, split_seed(1, "val"), progress=False)
    assert torch.equal(loaded.images, torch.from_numpy(expected["images"]))


def test_heldout_split_loads_its_own_classes(tmp_path, few_stats_images):
    count = len(HELDOUT_CLASSES)
    heldout = load_embedded("val", root=tmp_path, classes="heldout", num_images=2 * count, progress=False)
    assert heldout.class_names == list(HELDOUT_CLASSES)
    assert sorted(heldout.labels.tolist()) == sorted(list(range(count)) * 2)
    faces = torch.tensor([HELDOUT_CLASSES[label].startswith("face:") for label in heldout.labels.tolist()])
    assert faces.any() and heldout.extras["parts"][faces].isfinite().all()
    assert heldout.extras["parts"][~faces].isnan().all()


def test_bad_arguments_name_the_valid_values(tmp_path):
    with pytest.raises(ValueError, match=r"unknown split 'training'.*'train', 'val', 'test'"):
        load_embedded("training", root=tmp_path)
    with pytest.raises(ValueError, match=r"unknown classes 'all'.*'main', 'heldout'"):
        load_embedded("train", root=tmp_path, classes="all")
    with pytest.raises(ValueError, match=r"unknown classes 'extra'.*'main', 'heldout'"):
        generate_shapes(4, seed=0, classes="extra")
    with pytest.raises(ValueError, match="num_images must be a positive integer"):
        load_embedded("val", root=tmp_path, num_images=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate_shapes(4, seed=-1)
    with pytest.raises(ValueError, match="image_size must be an integer of at least 16"):
        generate_shapes(4, seed=0, image_size=8)
    with pytest.raises(ValueError, match="image_size must be an integer of at least 16"):
        load_embedded("val", root=tmp_path, num_images=4, image_size=True)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        generate_shapes(4, seed=0, workers=0)
    assert not list(tmp_path.iterdir())  # nothing was written


def test_atomic_write_replaces_whole_files_or_nothing(tmp_path):
    target = tmp_path / "sub" / "result.json"
    with atomic_write(target, "w") as stream:
        stream.write("old")
    assert target.read_text() == "old" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(target, "w") as stream:
            stream.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"  # the previous version survives
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # no temporary file left


#: sha256 of the first 40 images (and annotations) of seed 0, per generator version.
# Version 5 stores the part coordinates as (y, x) instead of (x, y); its pictures are those of
# version 4 (with the parts swapped back its arrays hash to version 4's digest).
PICTURE_HASHES = {
    4: "5a862de523132595b6f4053e82e12f45994a838138e413c402e52a046deb5ca9",
    5: "434307d5d415e11eab27e6e6476e7f6c868356e1c9fb7fe16ca312cfd7ae0ff3",
    6: "927d9584adb7807ee2a1ca31c0f5a98216c030bbda88ebc0cd298c0ee164aadc",
    7: "ac1b8a5b203bac045c910930648dd213bdb158a569f245db0ce9cf64ef0743fc",
}
# Version 7 changed only the defaults (layout and image size): version 6's pictures are still drawn.
VERSION_6 = {"image_size": 64, "layout": Layout((0.26, 0.46), 0.08)}


def picture_hash(shapes: dict[str, np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for key in ARRAY_KEYS:
        digest.update(shapes[key].tobytes())
    return digest.hexdigest()


def test_the_generator_version_pins_the_pictures():
    """Caches, the shipped checkpoints and the committed tables are only valid for these pictures:
    a change to the drawing code that alters a single pixel needs a new GENERATOR_VERSION."""
    shapes = generate_shapes(40, seed=0, progress=False, workers=1)
    assert embedded.GENERATOR_VERSION in PICTURE_HASHES, "a new generator version needs its hash here"
    assert picture_hash(shapes) == PICTURE_HASHES[embedded.GENERATOR_VERSION], (
        "the pictures changed: bump GENERATOR_VERSION (caches rebuild), retrain the checkpoints "
        "and record the new hash here"
    )


def test_version_6_pictures_are_drawn_with_its_layout_and_size():
    assert picture_hash(generate_shapes(40, seed=0, progress=False, workers=1, **VERSION_6)) == PICTURE_HASHES[6]


def test_default_layout_is_the_shipped_generator():
    """Passing the default layout changes nothing: the same pictures, the same cache file name."""
    assert embedded.DEFAULT_LAYOUT == Layout() and Layout().tag() == ""
    assert_same_arrays(
        generate_shapes(12, seed=3, progress=False), generate_shapes(12, seed=3, progress=False, layout=Layout())
    )


def test_centred_layout_keeps_objects_near_the_centre_at_its_sizes(tmp_path, few_stats_images):
    layout = Layout(object_scale=(0.3, 0.4), centre_spread=0.05)
    shapes = generate_shapes(2 * len(EMBEDDED_CLASSES), seed=1, image_size=64, progress=False, layout=layout)
    anywhere = Layout(object_scale=(0.2, 0.36), centre_spread=None)
    masks = torch.from_numpy(shapes["masks"]).float()
    rows, columns = torch.arange(64.0).view(1, 64, 1), torch.arange(64.0).view(1, 1, 64)
    area = masks.sum(dim=(1, 2))
    centroid_y, centroid_x = (masks * rows).sum(dim=(1, 2)) / area, (masks * columns).sum(dim=(1, 2)) / area
    smaller = generate_shapes(2 * len(EMBEDDED_CLASSES), seed=1, image_size=64, progress=False, layout=anywhere)
    small_masks = torch.from_numpy(smaller["masks"]).float()
    # larger objects, drawn about the centre (the mask centroid moves with the object's shape too)
    assert area.mean() > 1.5 * small_masks.sum(dim=(1, 2)).mean()
    assert ((centroid_y - 31.5).abs().median() < 6) and ((centroid_x - 31.5).abs().median() < 6)
    # a layout has its own cache file, and the file records it
    loaded = load_embedded("val", root=tmp_path, num_images=10, progress=False, layout=layout)
    assert torch.equal(
        loaded.images,
        torch.from_numpy(generate_shapes(10, split_seed(0, "val"), progress=False, layout=layout)["images"]),
    )
    (sidecar,) = tmp_path.glob(f"embedded-main-val-seed0-n10-v{embedded.GENERATOR_VERSION}-layout*.json")
    assert json.loads(sidecar.read_text())["layout"] == {"object_scale": [0.3, 0.4], "centre_spread": 0.05}


def test_other_image_sizes_get_their_own_cache_file(tmp_path, few_stats_images):
    """A design at 64 pixels: the generator's pictures at that size, cached apart from the 128-pixel ones."""
    default = load_embedded("val", root=tmp_path, num_images=6, progress=False)
    small = load_embedded("val", root=tmp_path, num_images=6, progress=False, image_size=64)
    assert embedded.IMAGE_SIZE == 128 and default.images.shape == (6, 3, 128, 128)
    assert small.images.shape == (6, 3, 64, 64) and small.extras["masks"].shape == (6, 64, 64)
    drawn = generate_shapes(6, split_seed(0, "val"), image_size=64, progress=False)["images"]
    assert torch.equal(small.images, torch.from_numpy(drawn))
    assert torch.equal(small.labels, default.labels)
    faces = ~torch.isnan(small.extras["parts"][:, 0, 0])
    assert faces.any() and ((small.extras["parts"][faces] > 0) & (small.extras["parts"][faces] < 63)).all()
    (sidecar,) = tmp_path.glob(f"embedded-main-val-seed0-n6-v{embedded.GENERATOR_VERSION}-size64.json")
    assert json.loads(sidecar.read_text())["image_size"] == 64
    assert load_embedded("val", root=tmp_path, num_images=6, progress=False, image_size=64).images.equal(small.images)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"object_scale": (0.4, 0.3)}, "object_scale"),
        ({"object_scale": (0.0, 0.3)}, "object_scale"),
        ({"centre_spread": 0.7}, "centre_spread"),
    ],
)
def test_bad_layouts_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        Layout(**arguments)
    with pytest.raises(TypeError, match="Layout"):
        generate_shapes(2, seed=0, progress=False, layout=(0.2, 0.3))  # type: ignore[arg-type]


def test_the_old_layout_draws_the_pictures_of_version_5():
    """Design C of course_utils.designs is the dataset shipped before version 6, pixel for pixel."""
    from course_utils.designs import DESIGNS

    layout = DESIGNS["C"].layout
    assert layout == Layout(object_scale=(0.2, 0.36), centre_spread=None)
    drawn = generate_shapes(40, seed=0, progress=False, workers=1, image_size=64, layout=layout)
    assert picture_hash(drawn) == PICTURE_HASHES[5]
    assert layout == embedded.DEFAULT_LAYOUT  # version 7 draws the same layout at 128 pixels


@pytest.mark.parametrize("pixels_per_unit", [4.0, 40.0])
def test_every_object_is_drawn_within_its_reach(pixels_per_unit):
    """The generator evaluates an object only in the square around its centre that
    ``_OBJECT_REACH`` local units (+ the widened edge of approximate ellipse distances) span; that
    is exact only if no layer of any class paints outside it, at any size or random draw."""
    side = int(6 * pixels_per_unit) + 1  # local coordinates from -3 to 3
    v, u = (np.mgrid[0:side, 0:side].astype(np.float64) - side // 2) / pixels_per_unit
    limit = embedded._OBJECT_REACH + embedded._OBJECT_EDGE_PX / pixels_per_unit
    outside = np.hypot(u, v) > limit
    farthest = 0.0
    for class_name in embedded._RENDERERS:
        for seed in range(8):
            rng = np.random.default_rng(seed)
            drawing = embedded._draw(rng, class_name, u, v, np.full(3, 0.5), pixels_per_unit)
            for sdf, _ in drawing.layers:
                alpha = np.clip(0.5 - sdf * pixels_per_unit / embedded._EDGE_PX, 0.0, 1.0)
                assert not alpha[outside].any(), f"{class_name} (seed {seed}) paints beyond the reach"
                farthest = max(farthest, float(np.hypot(u, v)[alpha > 0].max(initial=0.0)))
    assert farthest > embedded._OBJECT_REACH - 0.1  # the bound is close to the farthest part drawn


def test_objects_too_large_to_fit_are_drawn_in_the_middle():
    """At sizes above about 0.59 of the side an object cannot fit anywhere; it is centred
    (a clear picture, not an error from the random generator)."""
    drawn = generate_shapes(12, seed=2, image_size=32, progress=False, layout=Layout((0.8, 0.9), None))
    masks = drawn["masks"]
    assert masks.any(axis=(1, 2)).all() and masks[:, 15:17, 15:17].all()
