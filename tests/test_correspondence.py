"""Table 1's correspondence measure: masking, the Hamming consistency Delta, random controls, the table."""

from __future__ import annotations

import itertools

import pytest
import torch

from course_utils.correspondence import (
    PART_NAMES,
    correspondence_delta,
    correspondence_table,
    hamming_consistency,
    mask_square,
    part_windows,
    random_centres,
)
from course_utils.data import ImageTensorDataset, load_embedded
from course_utils.models import ZFNet, ZFNetConfig
from tests.conftest import children_outputs

TINY = ZFNetConfig(num_classes=3, image_size=32, conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8))


def tiny_model(seed: int = 0) -> ZFNet:
    torch.manual_seed(seed)
    return ZFNet(TINY).eval()


def face_dataset(n: int = 12, size: int = 32, seed: int = 0) -> ImageTensorDataset:
    """Every other image is a 'face' with parts and an object mask; the others have NaN parts."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=generator, dtype=torch.uint8)
    labels = torch.arange(n) % 2
    parts = torch.full((n, 3, 2), float("nan"))
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(0, n, 2):
        cx, cy = 12 + 8 * torch.rand(2, generator=generator)
        parts[i] = torch.stack(  # (y, x) of left eye, right eye, nose
            [torch.stack([cy - 3, cx - 4]), torch.stack([cy - 3, cx + 4]), torch.stack([cy + 2, cx])]
        )
        rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        masks[i] = (columns - cx) ** 2 + (rows - cy) ** 2 <= 10**2
    radius = torch.where(labels == 0, 1.5, float("nan"))
    return ImageTensorDataset(
        images,
        labels,
        ["face", "other"],
        (0.5,) * 3,
        (0.25,) * 3,
        {"parts": parts, "part_radius": radius, "masks": masks},
    )


# ---- hamming_consistency -------------------------------------------------------------------------------------------


def test_hamming_consistency_hand_computed():
    eps = torch.tensor(
        [
            [1.0, -2.0, 0.0, 3.0],  # signs + - 0 +
            [1.0, 2.0, 0.0, -1.0],  # signs + + 0 -   differs from row 0 at 2 positions
            [-1.0, -2.0, 5.0, 3.0],
        ]
    )  # signs - - + +   differs from row 0 at 2, row 1 at 4
    assert hamming_consistency(eps) == pytest.approx((2 + 2 + 4) / (3 * 4))


def test_hamming_consistency_equals_mean_over_ordered_pairs():
    eps = torch.randn(5, 37, generator=torch.Generator().manual_seed(0))
    eps[eps.abs() < 0.5] = 0.0  # zeros as after a ReLU
    ordered = [
        (torch.sign(eps[i]) != torch.sign(eps[j])).sum().item() / eps.shape[1]
        for i, j in itertools.permutations(range(5), 2)
    ]
    assert hamming_consistency(eps) == pytest.approx(sum(ordered) / len(ordered))


def test_hamming_consistency_ignores_positive_scaling_and_is_zero_for_equal_rows():
    eps = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    scales = torch.tensor([[0.001], [1.0], [3.7], [1e4]])
    assert hamming_consistency(eps * scales) == hamming_consistency(eps)
    assert hamming_consistency(eps[:1].repeat(6, 1)) == 0.0
    assert hamming_consistency(torch.stack([eps[0], -eps[0]])) == 1.0


@pytest.mark.parametrize("shape", [(5,), (1, 4), (3, 0), (2, 3, 4)])
def test_hamming_consistency_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"eps must have shape \(N, D\)"):
        hamming_consistency(torch.zeros(shape))


# ---- mask_square ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "centre, window, rows, columns",
    [
        ((20.0, 10.0), 5, (18, 23), (8, 13)),  # odd window: centred on the pixel (y=20, x=10)
        ((20.0, 10.0), 4, (19, 23), (9, 13)),  # even window
        ((19.6, 10.4), 3, (19, 22), (9, 12)),  # fractional centre: nearest pixel
        ((31.0, 0.0), 5, (29, 32), (0, 3)),  # clipped at the border
    ],
)
def test_mask_square_changes_exactly_the_square(centre, window, rows, columns):
    image = torch.rand(3, 32, 32) + 1.0
    original = image.clone()
    masked = mask_square(image, centre, window, fill=-7.0)
    expected = original.clone()
    expected[:, rows[0] : rows[1], columns[0] : columns[1]] = -7.0
    assert torch.equal(masked, expected)
    assert torch.equal(image, original)  # the input is not modified


@pytest.mark.parametrize("centre", [(5.0, 32.0), (-0.5, 5.0), (3.0, float("nan"))])
def test_mask_square_rejects_centres_outside_the_image(centre):
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        mask_square(torch.zeros(3, 32, 32), centre, 3)


def test_mask_square_rejects_batches_empty_squares_and_bad_fills():
    with pytest.raises(ValueError, match=r"image must have shape \(C, H, W\)"):
        mask_square(torch.zeros(2, 3, 32, 32), (4, 4), 3)
    for window in (0, 2.5, True):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            mask_square(torch.zeros(3, 32, 32), (4, 4), window)
    with pytest.raises(ValueError, match="fill must be finite"):
        mask_square(torch.zeros(3, 32, 32), (4, 4), 3, fill=float("nan"))


# ---- correspondence_delta ------------------------------------------------------------------------------------------


def test_correspondence_delta_matches_a_manual_computation():
    model = tiny_model()
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    centres = torch.tensor([[5.0, 6.0], [10.0, 12.0], [20.0, 3.0], [31.0, 31.0]])
    windows = [3, 5, 7, 4]
    result = correspondence_delta(model, images, centres, windows, layers=("conv5", "pool5", "relu7"), fill=0.0)
    masked = images.clone()
    for i, ((y, x), side) in enumerate(zip(centres.long().tolist(), windows)):
        start = side // 2 if side % 2 else side // 2 - 1
        masked[i, :, max(0, y - start) : y - start + side, max(0, x - start) : x - start + side] = 0.0
    for layer in ("conv5", "pool5", "relu7"):
        eps = children_outputs(model, images)[layer].flatten(1) - children_outputs(model, masked)[layer].flatten(1)
        assert result[layer] == pytest.approx(hamming_consistency(eps)), layer
    assert not any(module._forward_hooks for module in model.modules())


def test_correspondence_delta_rejects_mismatched_centres_and_windows():
    model, images = tiny_model(), torch.zeros(3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"centres must have shape \(3, 2\)"):
        correspondence_delta(model, images, torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="one per image"):
        correspondence_delta(model, images, torch.zeros(3, 2), [3, 3])
    with pytest.raises(ValueError, match="window must be integers"):
        correspondence_delta(model, images, torch.zeros(3, 2), torch.tensor([3.0, 3.0, 3.0]))
    with pytest.raises(ValueError, match="N >= 2"):
        correspondence_delta(model, images[:1], torch.zeros(1, 2), 3)
    with pytest.raises(KeyError, match="unknown layer 'fc9'"):
        correspondence_delta(model, images, torch.zeros(3, 2), 3, layers=("fc9",))


# ---- random_centres ------------------------------------------------------------------------------------------------


def test_random_centres_fall_inside_the_region_with_the_square_inside_the_image():
    region = torch.zeros(50, 16, 16, dtype=torch.bool)
    region[:, 0:6, 0:16] = True  # a band at the top: squares must still fit below row 0
    windows = torch.tensor([5, 4] * 25)
    centres = random_centres(region, windows, torch.Generator().manual_seed(0))
    for (y, x), side in zip(centres.long().tolist(), windows.tolist()):
        assert region[0, y, x]
        image = torch.ones(1, 16, 16)
        assert mask_square(image, (y, x), side).eq(0).sum() == side * side  # not clipped
    again = random_centres(region, windows, torch.Generator().manual_seed(0))
    assert torch.equal(centres, again)
    other = random_centres(region, windows, torch.Generator().manual_seed(1))
    assert not torch.equal(centres, other)


def test_random_centres_reports_regions_that_cannot_hold_the_square():
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    region[0, 8, 8] = True
    region[1, 0, 0] = True  # only a corner pixel: a 5x5 square centred there leaves the image
    with pytest.raises(ValueError, match="image 1: no pixel of the region"):
        random_centres(region, 5, torch.Generator())
    with pytest.raises(ValueError, match="bool tensor of shape"):
        random_centres(region.float(), 5, torch.Generator())


def test_part_windows_cover_the_part_disc():
    assert part_windows(torch.tensor([1.0, 1.5, 2.01, 3.0])).tolist() == [3, 5, 7, 7]


# ---- correspondence_table ------------------------------------------------------------------------------------------


def test_correspondence_table_rows_statistics_and_determinism():
    model, dataset = tiny_model(), face_dataset()
    table = correspondence_table(model, dataset, draws=3, num_images=4, seed=5, layers=("pool5", "relu7"))
    assert table.occlusions == (*PART_NAMES, "random") and table.layers == ("pool5", "relu7")
    assert list(table.deltas) == [(occlusion, layer) for occlusion in table.occlusions for layer in table.layers]
    for summary in table.deltas.values():
        values = torch.tensor(summary.values, dtype=torch.float64)
        assert len(values) == 3 and ((values >= 0) & (values <= 1)).all()
        assert summary.mean == pytest.approx(values.mean().item())
        assert summary.std == pytest.approx(values.std().item())
    assert correspondence_table(model, dataset, draws=3, num_images=4, seed=5) == table
    assert correspondence_table(model, dataset, draws=3, num_images=4, seed=6) != table
    text = table.format()
    first = table["left_eye", "pool5"]
    assert "Delta pool5" in text and "Delta relu7" in text and f"{first.mean:.3f} +- {first.std:.3f}" in text
    with pytest.raises(KeyError, match="no entry"):
        table["mouth", "pool5"]


def test_correspondence_table_single_draw_equals_correspondence_delta_on_the_chosen_faces():
    model, dataset = tiny_model(), face_dataset()
    faces = torch.arange(0, 12, 2)  # all six faces, so the draw's choice is only an ordering
    table = correspondence_table(model, dataset, parts=("nose",), draws=1, num_images=6, window=3)
    nose = correspondence_delta(model, dataset.normalize(dataset.images[faces]), dataset.extras["parts"][faces, 2], 3)
    for layer, delta in nose.items():  # Delta is a mean over pairs, so the image order does not matter
        assert table["nose", layer].mean == pytest.approx(delta)
        assert table["nose", layer].std is None


def test_correspondence_table_rejects_datasets_without_parts_and_bad_options(colour_data):
    model, dataset = tiny_model(), face_dataset()
    with pytest.raises(ValueError, match="load_embedded"):
        correspondence_table(model, colour_data[0], progress=False)
    with pytest.raises(ValueError, match="unknown parts"):
        correspondence_table(model, dataset, parts=("mouth",), progress=False)
    with pytest.raises(ValueError, match="6 face images"):
        correspondence_table(model, dataset, num_images=7, progress=False)
    dataset.extras["parts"][2, 0, 0] = -1.0  # a face whose left eye is outside the image is never drawn
    with pytest.raises(ValueError, match="5 face images"):
        correspondence_table(model, dataset, num_images=6, progress=False)
    with pytest.raises(ValueError, match="random_within"):
        correspondence_table(model, dataset, random_within="background", progress=False)


def test_correspondence_table_runs_on_the_embedded_faces(tmp_path):
    dataset = load_embedded("val", root=tmp_path, num_images=40, progress=False)
    config = ZFNetConfig(conv_widths=(4, 4, 4, 4, 4), fc_widths=(8, 8), image_size=dataset.images.shape[-1])
    model = ZFNet(config).eval()
    table = correspondence_table(model, dataset, draws=2, num_images=2)
    assert len(table.deltas) == 8 and all(0 <= summary.mean <= 1 for summary in table.deltas.values())
