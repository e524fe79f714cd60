"""Fig. 2 on real photos: top-9 deconvnet projections of conv1..conv5 for an ImageFolder.

    python benchmarks/top9_real_photos.py                       # after benchmarks/train_real_photos.py
    python benchmarks/top9_real_photos.py --checkpoint /tmp/tiny_run/final.pt
    python benchmarks/top9_real_photos.py path/to/folder --checkpoint model.pt --channels 6

The folder (default: the photo folder chosen with ``COURSE_PHOTOS``) is an ImageFolder
with a ``val`` split (or class folders directly); the checkpoint is a course ZFNet trained on it
(default ``build/real_photos/final.pt``, where ``benchmarks/train_real_photos.py`` writes it; or
``python -m course_utils.train --dataset <folder> --out ...``). The script mines the top-9
activations of every channel of conv1..conv5 over the validation images, projects those of a
few strong, varied feature maps per layer (``activations.select_feature_maps``) and writes one Fig-2
grid per layer as a PNG under ``build/real_photos/`` (git-ignored: figures of a photo dataset
are never committed). It prints what it wrote.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_utils.activations import mine_top_activations, select_feature_maps  # noqa: E402
from course_utils.data import load_dataset, photo_folder  # noqa: E402
from course_utils.figures import top9_figure  # noqa: E402
from course_utils.models import CheckpointError, load_checkpoint  # noqa: E402

DEFAULT_OUT = REPO / "build" / "real_photos"
DEFAULT_CHECKPOINT = DEFAULT_OUT / "final.pt"
LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "folder",
        nargs="?",
        type=Path,
        default=None,
        help="ImageFolder with a val split (default: $COURSE_PHOTOS)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help=f"a course ZFNet checkpoint trained on this folder (default: {DEFAULT_CHECKPOINT})",
    )
    parser.add_argument("--split", default="val", help="the split to mine (default: val)")
    parser.add_argument("--channels", type=int, default=8, help="feature maps shown per layer (default: 8)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the PNGs go (default: {DEFAULT_OUT})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        args.folder = photo_folder(args.folder, required=True)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.folder.is_dir():
        print(
            f"no image folder at {args.folder}: pass the path of an ImageFolder "
            "(<folder>/val/<class>/*.jpg) as the first argument",
            file=sys.stderr,
        )
        return 2
    if args.channels < 1:
        print(f"--channels must be at least 1, got {args.channels}", file=sys.stderr)
        return 2
    try:
        model, metadata = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(
            f"cannot load the checkpoint: {error}\nTrain one on the photos first, e.g. with "
            "benchmarks/train_real_photos.py, or pass --checkpoint",
            file=sys.stderr,
        )
        return 2
    if "mean" not in metadata or "std" not in metadata:
        print(
            f"{args.checkpoint} records no normalization (mean/std); train it with course_utils.train", file=sys.stderr
        )
        return 2
    data = load_dataset(
        str(args.folder), args.split, image_size=model.config.image_size, mean=metadata["mean"], std=metadata["std"]
    )
    if data.num_classes != model.config.num_classes:
        print(
            f"the folder has {data.num_classes} classes but the model was trained on "
            f"{model.config.num_classes}; give the checkpoint trained on this folder",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    tops = mine_top_activations(model, data, LAYERS, k=9)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for layer in LAYERS:
        top = tops[layer]
        # the strongest maps; above conv1 at most one per class their top-9 images mostly show
        channels = select_feature_maps(top, None if layer == "conv1" else data.labels, args.channels)
        figure = top9_figure(
            model,
            data,
            top,
            channels,
            title=f"{layer} on {args.folder.name} ({args.split}, {len(data)} photos): "
            "top-9 projections beside their image patches",
        )
        path = args.out / f"top9_{layer}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
        print(f"wrote {path}  ({layer}: channels {channels})", flush=True)
    print(f"{len(written)} Fig-2 grids for {len(data)} images in {time.perf_counter() - start:.1f}s under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
