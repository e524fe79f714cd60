"""Benchmark the deconvnet: batched projections vs Captum, and top-9 mining vs a forward pass.

Run with no arguments (``python benchmarks/bench_deconvnet.py``). It uses the shipped
checkpoint ``data/checkpoints/final.pt`` when present (else a random-weight ZFNet) and
the embedded validation images (else synthetic ones). With ``--imagenet`` it uses
torchvision's AlexNet (ImageNet weights when cached, else random ones: the timing is the
same) on 200 photos of the photo folder (``COURSE_PHOTOS``; else the sample photos, shifted
and mirrored to 200) at 224 px. It measures

(a) the deconvnet projections of the top-9 activations of EVERY channel of conv5, done by
    :func:`course_utils.deconvnet.project` in one batched call, against a loop of Captum's
    ``NeuronDeconvolution`` over the same (image, channel, y, x) selections, checking that both
    give the same numbers;
(b) :func:`course_utils.activations.mine_top_activations` (top-9 of conv1..conv5) against a plain
    forward pass over the same data.

Times are the best of a few repeats after a warm-up (the Captum loop, slow, runs once) (``time.perf_counter``). The last line is
the headline; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _imagenet import load_alexnet  # noqa: E402  (beside this script)

from course_utils.activations import mine_top_activations  # noqa: E402
from course_utils.data import ImageTensorDataset, load_dataset, load_image_folder, photo_folder  # noqa: E402
from course_utils.data.real import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from course_utils.deconvnet import project  # noqa: E402
from course_utils.models import ZFNet, load_checkpoint  # noqa: E402

CHECKPOINT = REPO / "data" / "checkpoints" / "final.pt"
LAYER = "conv5"
MINED_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]
BATCH_SIZE = 128
SPEEDUP_TARGET = 2.0
MINING_TARGET = 1.2
MAX_DIFF = 1e-5
IMAGENET_PHOTOS = 200
IMAGENET_BATCH_SIZE = 50


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls and the last result."""
    runs = [timed(function) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), runs[-1][1]


def load_model() -> tuple[torch.nn.Module, str]:
    if CHECKPOINT.exists():
        model, _ = load_checkpoint(CHECKPOINT)
        return model.eval(), f"checkpoint {CHECKPOINT.relative_to(REPO)}"
    torch.manual_seed(0)
    return ZFNet().eval(), "random-weight ZFNet (no checkpoint yet)"


def load_data() -> tuple[Any, str]:
    """The embedded validation set, or 1,000 synthetic normalized images when unavailable."""
    try:
        from course_utils.data import load_dataset

        dataset = load_dataset("embedded", "val")
        return dataset, f"embedded val ({len(dataset)} images)"
    except Exception as error:  # the data module may not be built yet
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(1000, 3, 64, 64, generator=generator)
        return images, f"synthetic (1000 images; embedded data unavailable: {error})"


def load_imagenet_photos(count: int) -> tuple[ImageTensorDataset, str]:
    """``count`` photos at 224 px normalized for ImageNet: the photo folder's first ones (every
    ``n``-th), else the sample photos shifted and mirrored."""
    folder = photo_folder()
    if folder is not None:
        split = "val" if (folder / "val").is_dir() else None
        photos = load_image_folder(folder, split, image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, progress=False)
        photos = photos.subset(range(0, len(photos), max(1, len(photos) // count))[:count])
        return photos, f"{len(photos)} photos of {folder.name} at 224 px"
    samples = load_dataset("samples")
    pictures = [
        torch.roll(picture.flip(-1) if (index // len(samples)) % 2 else picture, shifts=(index % 17) * 3, dims=-1)
        for index, picture in ((index, samples.images[index % len(samples)]) for index in range(count))
    ]
    photos = ImageTensorDataset(
        torch.stack(pictures), torch.arange(count) % len(samples), samples.class_names, IMAGENET_MEAN, IMAGENET_STD
    )
    return photos, f"{count} shifted and mirrored copies of the {len(samples)} sample photos (no COURSE_PHOTOS)"


def batches(data: Any, batch_size: int):
    if isinstance(data, torch.Tensor):
        return data.split(batch_size)
    return (images for images, _ in data.batches(batch_size))


def normalized(data: Any, indices: torch.Tensor) -> torch.Tensor:
    return data[indices] if isinstance(data, torch.Tensor) else data.normalize(data.images[indices])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imagenet", action="store_true", help="AlexNet on 200 photos at 224 px")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")  # hook/grad notices per call
    from captum.attr import NeuronDeconvolution

    if args.imagenet:
        (model, model_name), (data, data_name) = load_alexnet(), load_imagenet_photos(IMAGENET_PHOTOS)
        batch_size = IMAGENET_BATCH_SIZE
    else:
        (model, model_name), (data, data_name) = load_model(), load_data()
        batch_size = BATCH_SIZE
    print(f"model: {model_name}; data: {data_name}; torch threads: {torch.get_num_threads()}")

    # (a) deconvnet projections of the top-9 of every conv5 channel
    top = mine_top_activations(model, data, [LAYER], k=9, batch_size=batch_size, progress=False)[LAYER]
    selections = top.selections()
    needed, selections[:, 0] = torch.unique(selections[:, 0], return_inverse=True)
    images = normalized(data, needed)
    print(
        f"(a) {len(selections)} selections ({top.values.shape[0]} channels x top-{top.k}) "
        f"from {len(needed)} distinct images"
    )

    def ours() -> torch.Tensor:
        return project(model, images, LAYER, selections, unit_value="one", progress=False)

    deconvolution = NeuronDeconvolution(model, dict(model.named_children())[LAYER])

    def captum() -> torch.Tensor:
        return torch.cat(
            [
                deconvolution.attribute(images[i : i + 1], neuron_selector=(c, y, x))
                for i, c, y, x in selections.tolist()
            ]
        )

    warm_up = slice(0, 8)  # a few selections initialize both code paths (thread pools, kernels)
    project(model, images, LAYER, selections[warm_up], unit_value="one", progress=False)
    for i, c, y, x in selections[warm_up].tolist():
        deconvolution.attribute(images[i : i + 1], neuron_selector=(c, y, x))
    ours_time, ours_result = best_time(ours, repeats=3)
    captum_time, captum_result = best_time(captum, repeats=1)  # slow: one run
    max_diff = float((ours_result - captum_result).abs().max())
    speedup = captum_time / ours_time
    print(f"    course_utils.deconvnet.project (batched): {ours_time:.3f} s")
    print(f"    captum NeuronDeconvolution loop:          {captum_time:.3f} s")
    print(
        f"    speedup {speedup:.1f}x, max abs diff {max_diff:.1e} "
        f"(largest value {float(captum_result.abs().max()):.1e})"
    )

    # (b) top-9 mining vs a plain forward pass over the same data
    def forward() -> None:
        with torch.no_grad():
            for batch in batches(data, batch_size):
                model(batch)

    def mining() -> None:
        mine_top_activations(model, data, MINED_LAYERS, k=9, batch_size=batch_size, progress=False)

    forward_times, mining_times = [], []
    for _ in range(3):  # interleaved, so both see the same machine load (mining above warmed up)
        forward_times.append(timed(forward)[0])
        mining_times.append(timed(mining)[0])
    forward_time, mining_time = min(forward_times), min(mining_times)
    ratio = mining_time / forward_time
    print(
        f"(b) plain forward pass (all layers): {forward_time:.3f} s; top-9 mining of "
        f"{', '.join(MINED_LAYERS)} (stops after {MINED_LAYERS[-1]}): {mining_time:.3f} s; ratio {ratio:.2f}x"
    )

    passed = speedup >= SPEEDUP_TARGET and max_diff <= MAX_DIFF and ratio <= MINING_TARGET
    print(
        f"deconvnet{' (AlexNet, 224 px)' if args.imagenet else ''}: {speedup:.1f}x faster than captum (target >= {SPEEDUP_TARGET:g}x), max diff "
        f"{max_diff:.0e} (target <= {MAX_DIFF:g}); mining: {ratio:.2f}x forward "
        f"(target <= {MINING_TARGET:g}x){'' if passed else ' -- TARGET MISSED'}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
