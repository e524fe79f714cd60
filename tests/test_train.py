"""The training recipe: filter renormalization, determinism, checkpoints, CLI, DDP."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import course_utils.train
from course_utils.models import ZFNet, ZFNetConfig, load_checkpoint
from course_utils.train import (
    TrainConfig,
    augment_batch,
    confusion_matrix,
    evaluate,
    largest_filter_rms,
    main,
    predict,
    renormalize_filters,
    snapshot_name,
    train,
)

SMALL = ZFNetConfig(conv_widths=(8, 8, 8, 8, 8), fc_widths=(16, 16), conv1_init_std=None)


def test_largest_filter_rms_by_hand():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 2), torch.nn.ReLU(), torch.nn.Conv2d(2, 1, 1), torch.nn.Linear(1, 1)
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[0.3, -0.3], [0.3, -0.3]]], [[[0.0, 0.0], [0.0, 0.4]]]]))  # RMS 0.3, 0.2
        model[2].weight.fill_(0.25)
        model[3].weight.fill_(9.0)  # not a conv filter
    assert largest_filter_rms(model) == pytest.approx(0.3)
    assert largest_filter_rms(torch.nn.Linear(2, 2)) == 0.0


def test_a_clipping_that_never_acts_leaves_the_run_unchanged_and_the_history_says_so(colour_data):
    """largest_filter_rms in the history is measured before the clipping: under the cap, the
    clipped run is the unclipped run bit for bit; over it, the clipping acted."""
    train_set, val_set = colour_data
    runs = {}
    for cap in (None, 5.0, 0.05):
        config = TrainConfig(epochs=2, batch_size=32, seed=1, max_filter_rms=cap)
        runs[cap] = train(config, train_set, val_set, SMALL, progress=False)
    unclipped, history = runs[None]
    largest = max(epoch["largest_filter_rms"] for epoch in history)
    assert largest_filter_rms(unclipped) <= largest < 5.0
    loose, loose_history = runs[5.0]
    for name, value in unclipped.state_dict().items():
        assert torch.equal(value, loose.state_dict()[name]), name
    assert [epoch["largest_filter_rms"] for epoch in loose_history] == [
        epoch["largest_filter_rms"] for epoch in history
    ]
    tight, tight_history = runs[0.05]
    assert max(epoch["largest_filter_rms"] for epoch in tight_history) > 0.05  # it grew past the cap, and was cut back
    assert largest_filter_rms(tight) == pytest.approx(0.05)


def test_renormalize_filters_caps_rms_at_threshold():
    conv = torch.nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(
            torch.stack([torch.full((2, 3, 3), 0.5), torch.full((2, 3, 3), 0.05), torch.randn(2, 3, 3) * 10])
        )
    before = conv.weight.detach().clone()
    assert renormalize_filters(torch.nn.Sequential(conv), 0.1) == 2
    rms = conv.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms[[0, 2]], torch.tensor([0.1, 0.1]))
    torch.testing.assert_close(conv.weight[1], before[1], rtol=0, atol=0)
    # direction is kept: the rescaled filter is a positive multiple of the original
    cosine = torch.nn.functional.cosine_similarity(conv.weight[2].flatten(), before[2].flatten(), dim=0)
    assert cosine > 1 - 1e-6


def test_augment_batch_shifts_and_flips_keep_content():
    generator = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert augment_batch(images, "none", generator) is images
    flipped = augment_batch(images, "flip", generator)
    for original, result in zip(images, flipped):
        assert torch.equal(result, original) or torch.equal(result, original.flip(-1))
    shifted = augment_batch(images, "crop_flip", generator)
    assert shifted.shape == images.shape


def test_predict_is_the_same_in_any_batch_size(colour_data):
    """Evaluation batches (EVAL_BATCH_SIZE by default, for speed) are an implementation detail: one image's
    probabilities do not depend on the others in its batch."""
    _, val_set = colour_data
    torch.manual_seed(0)
    model = ZFNet(
        dataclasses.replace(SMALL, num_classes=val_set.num_classes, image_size=val_set.images.shape[-1])
    ).eval()
    whole = predict(model, val_set, batch_size=len(val_set))
    assert whole.shape == (len(val_set), val_set.num_classes)
    torch.testing.assert_close(whole.sum(dim=1), torch.ones(len(val_set)))
    for batch_size in (1, 7, 32):
        torch.testing.assert_close(predict(model, val_set, batch_size=batch_size), whole, rtol=1e-5, atol=1e-6)
    loss, accuracy = evaluate(model, val_set)
    assert accuracy == pytest.approx((whole.argmax(1) == val_set.labels).float().mean().item())
    assert loss == pytest.approx(-whole[torch.arange(len(val_set)), val_set.labels].log().mean().item(), rel=1e-5)


def test_training_learns_and_is_deterministic(colour_data, tmp_path):
    train_set, val_set = colour_data
    config = TrainConfig(epochs=3, batch_size=16, lr=0.02, seed=3, snapshot_epochs=(1, 2), out_dir=str(tmp_path))
    model, history = train(config, train_set, val_set, SMALL, progress=False)
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[-1]["val_acc"] > 0.9
    assert evaluate(model, val_set)[1] == pytest.approx(history[-1]["val_acc"])
    matrix = confusion_matrix(model, val_set)
    assert matrix.sum() == len(val_set) and matrix.diag().sum() / len(val_set) == pytest.approx(history[-1]["val_acc"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_01.pt", "epoch_02.pt", "final.pt", "history.json"]
    again, _ = train(
        config.__class__(**{**config.__dict__, "out_dir": None}), train_set, val_set, SMALL, progress=False
    )
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    loaded, meta = load_checkpoint(tmp_path / "final.pt")
    assert meta["class_names"] == train_set.class_names and meta["epoch"] == 3
    x = train_set.normalize(train_set.images[:4])
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # every conv filter respects the RMS cap after training
    for layer in (loaded.conv1, loaded.conv2, loaded.conv5):
        assert layer.weight.pow(2).mean(dim=(1, 2, 3)).sqrt().max() <= 0.1 + 1e-6


def test_bad_training_settings_are_refused(colour_data):
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="rotate")
    train_set, val_set = colour_data
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(TrainConfig(batch_size=1000), train_set, val_set, SMALL, progress=False)


def write_image_folder(root: Path, per_class: int = 24, size: int = 32) -> Path:
    """An ImageFolder of PNGs whose class is the dominant colour."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", per_class // 2)):
        for label, name in enumerate(("red", "green", "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                pixels[..., label] += 150
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Decoded-folder caches of these tests go to tmp_path, not the project's data/cache/."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))


def test_cli_trains_on_an_image_folder(tmp_path, private_cache):
    folder = write_image_folder(tmp_path / "folder")
    history = main(
        [
            "--dataset",
            str(folder),
            "--epochs",
            "2",
            "--batch-size",
            "24",
            "--out",
            str(tmp_path / "out"),
            "--conv-widths",
            "8,8,8,8,8",
            "--fc-widths",
            "16,16",
            "--snapshots",
            "1",
            "--threads",
            "1",
        ]
    )
    assert len(history) == 2
    model, meta = load_checkpoint(tmp_path / "out" / "final.pt")
    assert meta["class_names"] == ["blue", "green", "red"]
    assert model.config.conv_widths == (8, 8, 8, 8, 8)
    assert model.config.image_size == 64  # ImageFolder photos are resized to 64x64 by default
    assert (tmp_path / "out" / "epoch_01.pt").exists()


def test_cli_image_size_enlarges_photos_and_is_refused_where_it_cannot_apply(tmp_path, private_cache, capsys):
    folder = write_image_folder(tmp_path / "folder")
    small = ["--epochs", "1", "--conv-widths", "4,4,4,4,4", "--fc-widths", "8,8", "--threads", "1"]
    main(["--dataset", str(folder), "--image-size", "96", "--out", str(tmp_path / "out"), *small])
    model, _ = load_checkpoint(tmp_path / "out" / "final.pt")
    assert model.config.image_size == 96
    for dataset, size, message in (("cifar10", "96", "does not apply to cifar10"), (str(folder), "8", "at least 16")):
        with pytest.raises(SystemExit):
            main(["--dataset", dataset, "--image-size", size, "--out", str(tmp_path / "refused"), *small])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_torchrun_ddp_matches_single_process(tmp_path, private_cache):
    """Two gloo processes with half batches each follow the same trajectory as one process."""
    folder = write_image_folder(tmp_path / "folder")
    common = [
        "--dataset",
        str(folder),
        "--epochs",
        "1",
        "--batch-size",
        "24",
        "--conv-widths",
        "8,8,8,8,8",
        "--fc-widths",
        "16,16",
        "--dropout",
        "0",
        "--augment",
        "none",
        "--threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "course_utils.train",
            *common,
            "--out",
            str(tmp_path / "ddp"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "on 2 process(es)" in ddp.stdout
    main([*common, "--out", str(tmp_path / "single")])
    distributed, _ = load_checkpoint(tmp_path / "ddp" / "final.pt")
    single, _ = load_checkpoint(tmp_path / "single" / "final.pt")
    for (name, a), (_, b) in zip(distributed.state_dict().items(), single.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_real_photo_training_learns(photos, tmp_path):
    """The real-image path end to end on the photo folder (COURSE_PHOTOS), on a short budget
    (the full run is benchmarks/train_real_photos.py): 3 epochs beat chance clearly (2.5x)."""
    train_root = photos / "train" if (photos / "train").is_dir() else photos
    classes = sum(1 for p in train_root.iterdir() if p.is_dir())
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_real_photos.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--folder",
            str(photos),
            "--epochs",
            "3",
            "--target",
            f"{min(0.9, 2.5 / classes):.3f}",
            "--minutes",
            "15",
            "--max-aliased",
            "1.0",  # aliasing: the full run's target
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "real photos:" in result.stdout.splitlines()[-1]
    assert (tmp_path / "final.pt").exists()


def test_fractional_snapshots_save_the_network_part_way_through_an_epoch(colour_data, tmp_path, monkeypatch):
    """A snapshot at 0.5 epochs holds the weights after round(0.5 * steps per epoch) steps of the run."""
    train_set, val_set = colour_data
    config = TrainConfig(
        epochs=2, batch_size=16, lr=0.02, seed=3, snapshot_epochs=(0.5, 1), out_dir=str(tmp_path), snapshot_half=False
    )
    steps = round(0.5 * (len(train_set) // 16))
    after_step: dict[int, dict[str, torch.Tensor]] = {}
    real = course_utils.train.renormalize_filters

    def recording(model, max_rms=0.1):  # runs once per step, after the optimizer
        changed = real(model, max_rms)
        after_step[len(after_step) + 1] = {name: value.clone() for name, value in model.state_dict().items()}
        return changed

    monkeypatch.setattr(course_utils.train, "renormalize_filters", recording)
    train(config, train_set, val_set, SMALL, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_00.50.pt", "epoch_01.pt", "final.pt", "history.json"]
    half, meta = load_checkpoint(tmp_path / "epoch_00.50.pt")
    assert meta["epoch"] == 0.5 and meta["history"] == []
    for name, value in half.state_dict().items():
        assert torch.equal(value, after_step[steps][name]), name
    assert any(not torch.equal(value, after_step[steps + 1][name]) for name, value in half.state_dict().items())
    assert snapshot_name(0.25) == "epoch_00.25.pt" and snapshot_name(3) == "epoch_03.pt"
