"""Depth and size ablation (Zeiler & Fergus, section 5.1, Table 3), with parameter counts and seeds.

The paper removes or resizes layers and reports train/val error once per variant. A reader's
critique: no parameter counts, no seeds, no variance. Here every variant is trained with the
same recipe (:func:`course_utils.train.train`) for several seeds and each run records its
parameter count, train error (evaluated at the end, without augmentation), val error and
training time, and the numbers of its first layer (dead filters, aliased energy, filter RMS;
:meth:`course_utils.architecture.FirstLayerReport.numbers`); :func:`summarize` gives mean +- std per
variant. A variant is a set of :class:`~course_utils.models.ZFNetConfig` overrides; under the key
``"train"`` it may also override the :class:`~course_utils.train.TrainConfig` for itself only
(Fig 6's first layer without the filter RMS clipping: ``{"train": {"max_filter_rms": None}}``).

Results are a JSON list of records, rewritten atomically after every run; a re-run reads
the file and skips the (variant, seed) pairs already there, so a long regeneration can be
interrupted and resumed. A record made with another recipe (training settings, training or
validation images, architecture) is refused rather than mixed in.

Command line. Defaults: the 8 variants of :func:`ablation_variants` x the 3 :data:`SEEDS` (the
committed table), 8 epochs on a class-balanced subset of the embedded training set (300 images per class), validated on the
whole validation split, with the shipped model's recipe otherwise (batch 32, lr 0.01, flip).
``--table architecture`` trains Fig 6's three first layers (:func:`architecture_variants`) the
same way into ``data/arch_selection.json``. The README gives the measured times. Interrupt
at will: the next call resumes::

    python -m course_utils.ablation                            # Table 3 -> data/ablation.json
    python -m course_utils.ablation --table architecture       # Fig 6 -> data/arch_selection.json
    python -m course_utils.ablation --variants full "no conv3,4 + fc6,7" --out build/mine.json   # a subset
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .architecture import FIRST_LAYER_VARIANTS, first_layer_report
from .data.core import DATA_DIR, ImageTensorDataset, atomic_write
from .models import ZFNetConfig, count_parameters, save_checkpoint
from .progress import progress_bar
from .stats import MeanStd
from .threads import add_threads_option, set_torch_threads
from .train import TrainConfig, _ints, evaluate, train
from .transfer import few_shot_subset

__all__ = [
    "ablation_variants",
    "PAPER_TABLE_3",
    "paper_depth_points",
    "DEPTH_VARIANTS",
    "SEEDS",
    "architecture_variants",
    "TABLES",
    "TRAIN_OVERRIDABLE",
    "split_overrides",
    "dataset_fingerprint",
    "records_validated_on",
    "run_ablation",
    "checkpoint_name",
    "load_results",
    "summarize",
    "AblationSummary",
    "Reversal",
    "VariantSummary",
    "single_run_reversals",
    "main",
]


def ablation_variants(base: ZFNetConfig | None = None) -> dict[str, dict[str, Any]]:
    """Table 3's variants as :class:`ZFNetConfig` overrides of ``base`` (default: ``ZFNetConfig()``).

    The paper's rows, scaled to the course's network: remove conv3,4 / fc7 / fc6,7 / conv3,4
    and fc6,7; fc6,7 at half and double width (paper: 2048 and 8192 instead of 4096); conv3,4,5
    at double width (paper: 512, 1024, 512 instead of 384, 384, 256).
    """
    base = base or ZFNetConfig()
    c1, c2, c3, c4, c5 = base.conv_widths
    f6, f7 = base.fc_widths
    return {
        "full": {},
        "no conv3,4": {"remove": ("conv3", "conv4")},
        "no fc7": {"remove": ("fc7",)},
        "no fc6,7": {"remove": ("fc6", "fc7")},
        "no conv3,4 + fc6,7": {"remove": ("conv3", "conv4", "fc6", "fc7")},
        "fc6,7 narrow (x0.5)": {"fc_widths": (max(1, f6 // 2), max(1, f7 // 2))},
        "fc6,7 wide (x2)": {"fc_widths": (2 * f6, 2 * f7)},
        "conv3,4,5 wide (x2)": {"conv_widths": (c1, c2, 2 * c3, 2 * c4, 2 * c5)},
    }


#: The paper's Table 3 on ImageNet: variant -> (train, validation) top-1 error in percent.
PAPER_TABLE_3: dict[str, tuple[float, float]] = {
    "full": (35.1, 40.5),
    "no conv3,4": (41.8, 45.4),
    "no fc7": (27.4, 40.0),
    "no fc6,7": (27.4, 44.8),
    "no conv3,4 + fc6,7": (71.1, 71.3),
    "fc6,7 narrow (x0.5)": (40.3, 41.7),
    "fc6,7 wide (x2)": (26.8, 40.0),
    "conv3,4,5 wide (x2)": (18.8, 37.5),
}


def paper_depth_points(variant: str) -> float:
    """The paper's Table 3 validation error of ``variant`` minus the full network's, in points."""
    return PAPER_TABLE_3[variant][1] - PAPER_TABLE_3["full"][1]


#: Table 3's depth rows, which the depth finding compares: the full network, the three single
#: removals and the collapse (names of :func:`ablation_variants`).
DEPTH_VARIANTS = ("full", "no conv3,4", "no fc7", "no fc6,7", "no conv3,4 + fc6,7")
#: Training seeds of every variant of the committed tables (what the command line trains).
SEEDS = (0, 1, 2)


def architecture_variants() -> dict[str, dict[str, Any]]:
    """Fig 6's comparison (a copy of :data:`course_utils.architecture.FIRST_LAYER_VARIANTS`): the
    ZF first layer (7x7 filters, stride 2) with and without the filter RMS clipping, against an
    AlexNet-like one (11x11, stride 4); everything else unchanged."""
    return copy.deepcopy(FIRST_LAYER_VARIANTS)


#: :class:`TrainConfig` fields that a variant's ``"train"`` overrides may change (not the seed,
#: which the ablation sets, nor where and how checkpoints are written).
TRAIN_OVERRIDABLE = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name not in ("seed", "out_dir", "snapshot_epochs", "snapshot_half")
)


def split_overrides(name: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Variant ``name``'s overrides -> ``(ZFNetConfig overrides, TrainConfig overrides)``.

    The training overrides are the dict under the key ``"train"`` (default none); their keys
    must be in :data:`TRAIN_OVERRIDABLE`.
    """
    model_overrides = {key: value for key, value in overrides.items() if key != "train"}
    train_overrides = dict(overrides.get("train") or {})
    unknown = sorted(set(train_overrides) - set(TRAIN_OVERRIDABLE))
    if unknown:
        raise ValueError(
            f"variant {name!r}: {unknown} cannot be overridden per variant under 'train'; "
            f"choose from {list(TRAIN_OVERRIDABLE)}"
        )
    return model_overrides, train_overrides


#: The command line's tables: name -> (variants function, default results file).
TABLES = {
    "depth": (ablation_variants, DATA_DIR / "ablation.json"),
    "architecture": (architecture_variants, DATA_DIR / "arch_selection.json"),
}


def dataset_fingerprint(dataset: ImageTensorDataset) -> str:
    """Short sha256 of a dataset's images and labels (tells two subsets of equal size apart)."""
    digest = hashlib.sha256(dataset.images.numpy().tobytes())
    digest.update(dataset.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def records_validated_on(records: Sequence[dict[str, Any]], val_set: ImageTensorDataset) -> list[dict[str, Any]]:
    """The records whose validation images are ``val_set`` (those of an older dataset are left out)."""
    fingerprint = dataset_fingerprint(val_set)
    return [record for record in records if record.get("recipe", {}).get("val_data") == fingerprint]


def _recipe(train_config: TrainConfig, train_set: ImageTensorDataset, val_set: ImageTensorDataset) -> dict[str, Any]:
    """What must match for records to be comparable: the training settings but the seed, and the data."""
    config = dataclasses.asdict(train_config)
    for key in ("seed", "out_dir", "snapshot_epochs", "snapshot_half"):
        config.pop(key)
    return {
        **config,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "train_data": dataset_fingerprint(train_set),
        "val_data": dataset_fingerprint(val_set),
    }


def checkpoint_name(variant: str, seed: int) -> str:
    """File name of a run's model under :func:`run_ablation`'s ``checkpoint_dir``."""
    slug = "".join(character if character.isalnum() else "_" for character in variant).strip("_")
    return f"{slug}-seed{seed}.pt"


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records in ``path`` (``[]`` when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it or choose another results path") from error
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a JSON list of ablation records; delete it or choose another path")
    return records


def run_ablation(
    variants: dict[str, dict[str, Any]],
    train_set: ImageTensorDataset,
    val_set: ImageTensorDataset,
    train_config: TrainConfig,
    seeds: Sequence[int] = SEEDS,
    base: ZFNetConfig | None = None,
    progress: bool = True,
    results_path: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    reuse: Sequence[Mapping[str, Any]] = (),
    copy_same_runs: bool = True,
) -> list[dict[str, Any]]:
    """Train every variant once per seed with the same recipe; return all records.

    Args:
        variants: name -> :class:`ZFNetConfig` overrides of ``base`` (e.g. :func:`ablation_variants`),
            optionally with ``"train"``: :class:`TrainConfig` overrides for that variant only
            (see :func:`split_overrides`).
        train_set, val_set: the data; the train error is measured on ``train_set`` after
            training, in eval mode and without augmentation.
        train_config: the recipe; its ``seed`` is replaced by each of ``seeds``.
        seeds: the training seeds of every variant.
        results_path: JSON file of records, rewritten atomically after each run; runs already
            in it are skipped (resume). ``None``: keep results in memory only.
        checkpoint_dir: when given, each trained model is also saved there as
            ``<variant>-seed<seed>.pt`` (:func:`~course_utils.models.save_checkpoint`, with the
            data's class names and statistics), for experiments that need the models themselves.
        reuse: records of other tables (e.g. Table 3's ``"full"`` for Fig 6's ZF first layer). A
            run there or earlier in ``results_path`` with the same seed, architecture and recipe
            (data fingerprints included) is the same run, since seeded CPU training is
            deterministic; so is one that differs only in ``max_filter_rms`` if its filters never
            grew past either cap (its ``largest_filter_rms``), since then neither clipping acts.
            Its record (``seconds`` included) is copied under this variant's name, with its
            recipe and ``"reused_from"`` naming the original variant, instead of training again
            (with ``checkpoint_dir``, only where the original's checkpoint is there; it is copied
            too). Copies are never copied again.
        copy_same_runs: ``False`` trains every run (``reuse`` is then ignored).

    Each record: ``{"variant", "seed", "overrides", "config", "parameters", "train_error",
    "train_loss", "val_error", "val_loss", "seconds", "first_layer", "largest_filter_rms", "recipe"}``
    (+ ``"reused_from"`` for copies; errors are top-1,
    in [0, 1]; ``seconds`` is the time of the :func:`~course_utils.train.train` call, per-epoch
    validation included; ``first_layer`` is :meth:`~course_utils.architecture.FirstLayerReport.numbers`
    of the trained model; ``largest_filter_rms`` is the largest conv filter RMS after any step,
    before the clipping; ``recipe`` holds the variant's training settings, its ``"train"``
    overrides applied).
    """
    base = base or ZFNetConfig()
    recipe = json.loads(json.dumps(_recipe(train_config, train_set, val_set)))
    path = Path(results_path) if results_path is not None else None
    records = load_results(path) if path is not None else []
    done = {(record["variant"], record["seed"]): record for record in records}
    split = {name: split_overrides(name, overrides) for name, overrides in variants.items()}
    runs = progress_bar([(name, seed) for name in variants for seed in seeds], desc="ablation runs", progress=progress)
    for name, seed in runs:
        model_overrides, train_overrides = split[name]
        model_config = dataclasses.replace(
            base, **model_overrides, num_classes=train_set.num_classes, image_size=train_set.images.shape[-1]
        )
        variant_recipe = {**recipe, **json.loads(json.dumps(train_overrides))}
        stored_config = json.loads(json.dumps(model_config.to_dict()))
        if (name, seed) in done:
            previous = done[(name, seed)]
            if previous["recipe"] != variant_recipe or previous["config"] != stored_config:
                raise ValueError(
                    f"{path} already holds variant {name!r} seed {seed} made with another recipe or architecture "
                    f"(stored {previous['recipe']}, now {variant_recipe}); write to another results path or "
                    "delete the file"
                )
            continue
        same_run = next(
            (
                other
                for other in ([*reuse, *records] if copy_same_runs else [])
                if _same_run(other, seed, stored_config, variant_recipe)
                and (
                    checkpoint_dir is None or (Path(checkpoint_dir) / checkpoint_name(other["variant"], seed)).exists()
                )
            ),
            None,
        )
        if same_run is not None:
            copy_of = same_run["variant"]
            record = {**json.loads(json.dumps(same_run)), "variant": name, "overrides": variants[name]}
            if checkpoint_dir is not None:
                folder = Path(checkpoint_dir)
                shutil.copyfile(folder / checkpoint_name(copy_of, seed), folder / checkpoint_name(name, seed))
            _store(records, done, path, {**record, "recipe": variant_recipe, "reused_from": copy_of})
            if progress:
                runs.write(f"{name}, seed {seed}: the same run as {copy_of!r} seed {seed}, copied")
            continue
        runs.set_postfix_str(f"{name}, seed {seed}")
        start = time.perf_counter()
        model, history = train(
            dataclasses.replace(train_config, **train_overrides, seed=seed, out_dir=None),
            train_set,
            val_set,
            model_config,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        train_loss, train_accuracy = evaluate(model, train_set)
        record = {
            "variant": name,
            "seed": seed,
            "overrides": variants[name],
            "config": model_config.to_dict(),
            "parameters": count_parameters(model),
            "train_error": 1.0 - train_accuracy,
            "train_loss": train_loss,
            "val_error": 1.0 - history[-1]["val_acc"],
            "val_loss": history[-1]["val_loss"],
            "seconds": seconds,
            "first_layer": first_layer_report(model).numbers(),
            "largest_filter_rms": max(epoch["largest_filter_rms"] for epoch in history),
            "recipe": variant_recipe,
        }
        if checkpoint_dir is not None:
            save_checkpoint(
                Path(checkpoint_dir) / checkpoint_name(name, seed),
                model,
                class_names=list(train_set.class_names),
                mean=list(train_set.mean),
                std=list(train_set.std),
                history=history,
            )
        _store(records, done, path, record)
        if progress:
            runs.write(
                f"{name}, seed {seed}: val error {100 * record['val_error']:.1f}%, train error "
                f"{100 * record['train_error']:.1f}% ({seconds / 60:.1f} min)"
                + (f"; saved to {path}" if path is not None else "")
            )
    return records


def _same_run(stored: Mapping[str, Any], seed: int, config: Mapping[str, Any], recipe: Mapping[str, Any]) -> bool:
    """Whether the run ``stored`` (an original record) is the run that ``seed``, ``config`` and
    ``recipe`` would train: the same settings, or settings that differ only in the filter RMS
    clipping (``max_filter_rms``, ``None`` = none) where no filter of the stored run ever grew past
    either cap, so that neither clipping acts (its ``largest_filter_rms``, before any clipping)."""
    if "reused_from" in stored or stored.get("seed") != seed or stored.get("config") != config:
        return False
    stored_recipe = stored.get("recipe") or {}
    if stored_recipe == recipe:
        return True
    unclipped = [
        {key: value for key, value in settings.items() if key != "max_filter_rms"}
        for settings in (stored_recipe, recipe)
    ]
    largest = stored.get("largest_filter_rms")
    caps = (stored_recipe.get("max_filter_rms"), recipe.get("max_filter_rms"))
    return unclipped[0] == unclipped[1] and largest is not None and all(cap is None or largest <= cap for cap in caps)


def _store(
    records: list[dict[str, Any]], done: dict[tuple[str, int], dict[str, Any]], path: Path | None, record: dict
) -> None:
    """Add ``record`` to ``records`` and ``done``, and rewrite the results file atomically."""
    records.append(json.loads(json.dumps(record)))  # tuples -> lists, as when reloaded
    done[(record["variant"], record["seed"])] = records[-1]
    if path is not None:
        with atomic_write(path, "w") as stream:
            json.dump(records, stream, indent=2)


@dataclass(frozen=True)
class VariantSummary:
    """One variant of a table over its seeds (errors are fractions in [0, 1])."""

    variant: str
    parameters: int
    seeds: tuple[int, ...]
    train_error: MeanStd
    val_error: MeanStd
    seconds: MeanStd
    #: The first layer's numbers (:meth:`course_utils.architecture.FirstLayerReport.numbers`)
    #: over seeds, when every record has them.
    first_layer: dict[str, MeanStd] = field(default_factory=dict)


@dataclass(frozen=True)
class AblationSummary:
    """:func:`summarize`'s result: one :class:`VariantSummary` per variant, in order of first
    appearance; ``summary["full"]`` picks one by name."""

    rows: tuple[VariantSummary, ...]

    def __getitem__(self, variant: str) -> VariantSummary:
        for row in self.rows:
            if row.variant == variant:
                return row
        raise KeyError(f"no variant {variant!r}; the summary has {[row.variant for row in self.rows]}")

    def __iter__(self) -> Iterator[VariantSummary]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def format(self, paper: Mapping[str, tuple[float, float]] | None = None) -> str:
        """A text table: errors in percent, mean +- std over seeds; with ``paper``
        (``{variant: (train error %, val error %)}``) the paper's numbers beside ours."""
        width = max([len(row.variant) for row in self.rows] + [len("variant")])
        header = f"{'variant'.ljust(width)}  {'parameters':>10}  {'seeds':>5}  {'train error %':>14}  "
        header += f"{'paper':>6}  " if paper is not None else ""
        header += f"{'val error %':>14}  " + (f"{'paper':>6}  " if paper is not None else "") + f"{'s/run':>6}"
        lines = [header]
        for row in self.rows:
            reference = (paper or {}).get(row.variant, (math.nan, math.nan))
            line = f"{row.variant.ljust(width)}  {row.parameters:>10,}  {len(row.seeds):>5}  "
            line += f"{row.train_error.format(1, scale=100):>14}  "
            line += f"{reference[0]:>6.1f}  " if paper is not None else ""
            line += f"{row.val_error.format(1, scale=100):>14}  "
            line += f"{reference[1]:>6.1f}  " if paper is not None else ""
            lines.append(line + f"{row.seconds.mean:>6.1f}")
        return "\n".join(lines)


def _first_layer_summary(group: Sequence[Mapping[str, Any]]) -> dict[str, MeanStd]:
    layers = [record.get("first_layer") for record in group]
    if not all(layers):
        return {}
    keys = set.intersection(*(set(layer) for layer in layers if layer))
    return {key: MeanStd.of(layer[key] for layer in layers if layer) for key in sorted(keys)}


def summarize(results: Sequence[Mapping[str, Any]]) -> AblationSummary:
    """Mean and sample std over seeds of each variant's records (see :class:`AblationSummary`).

    Raises ``ValueError`` when one variant's records have different parameter counts (they come
    from different architectures).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in results:
        groups.setdefault(record["variant"], []).append(record)
    rows = []
    for name, group in groups.items():
        counts = {record["parameters"] for record in group}
        if len(counts) != 1:
            raise ValueError(
                f"variant {name!r} has records with different parameter counts {sorted(counts)}; "
                "they come from different architectures and cannot be averaged"
            )
        rows.append(
            VariantSummary(
                variant=name,
                parameters=counts.pop(),
                seeds=tuple(record["seed"] for record in group),
                train_error=MeanStd.of(record["train_error"] for record in group),
                val_error=MeanStd.of(record["val_error"] for record in group),
                seconds=MeanStd.of(record["seconds"] for record in group),
                first_layer=_first_layer_summary(group),
            )
        )
    return AblationSummary(tuple(rows))


@dataclass(frozen=True)
class Reversal:
    """How often single runs rank two variants against their means: ``reversed`` is the fraction
    of ``(seed of better, seed of worse)`` pairs in which ``better`` has the higher val error;
    ``gap`` the difference of their mean val errors."""

    better: str
    worse: str
    gap: float
    reversed: float


def single_run_reversals(results: Sequence[Mapping[str, Any]]) -> list[Reversal]:
    """How often one run per variant, as in the paper, would rank two variants the wrong way round.

    One :class:`Reversal` for every pair of variants ordered by mean val error over seeds,
    most often reversed first.
    """
    errors: dict[str, list[float]] = {}
    for record in results:
        errors.setdefault(record["variant"], []).append(record["val_error"])
    means = {name: sum(values) / len(values) for name, values in errors.items()}
    names = sorted(errors, key=means.__getitem__)
    rows = []
    for position, better in enumerate(names):
        for worse in names[position + 1 :]:
            combinations = [(a, b) for a in errors[better] for b in errors[worse]]
            reversed_fraction = sum(a > b for a, b in combinations) / len(combinations)
            rows.append(Reversal(better, worse, means[worse] - means[better], reversed_fraction))
    return sorted(rows, key=lambda row: (-row.reversed, row.gap))


def _seed_list(text: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated distinct integers >= 0, at least one."""
    problem = f"must be comma-separated integers >= 0 such as 0,1,2, got {text!r}"
    try:
        seeds = _ints(text, "--seeds")
    except ValueError:
        raise argparse.ArgumentTypeError(problem) from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(problem)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"lists a seed twice: {text!r}")
    return seeds


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--table",
        choices=sorted(TABLES),
        default="depth",
        help="depth: Table 3's variants; architecture: Fig 6's first layers (default: depth)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=SEEDS,
        help=f"comma-separated training seeds of every variant (default: those of the committed tables, "
        f"{','.join(map(str, SEEDS))})",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="NAME",
        help="variants of the table to run (quote names with spaces); default all: "
        + "; ".join(f"{table}: {list(make())}" for table, (make, _) in TABLES.items()),
    )
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=300,
        help="class-balanced training subset, images per class (0: the whole training set)",
    )
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the training subset")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--augment", default=TrainConfig.augment, choices=("none", "flip", "crop_flip"))
    parser.add_argument(
        "--out",
        default=None,
        help="results JSON, resumed if present (default: data/ablation.json or data/arch_selection.json)",
    )
    add_threads_option(parser)
    parser.add_argument(
        "--no-reuse",
        action="store_true",
        help="train every run, even one that this or the other table's file already holds "
        "(same seed, architecture and recipe, or a clipping that never acted; by default it is copied)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Entry point of ``python -m course_utils.ablation``; prints the summary, returns the records."""
    from .data import load_embedded

    args = _parse_args(argv)
    set_torch_threads(args.threads)
    make_variants, default_out = TABLES[args.table]
    variants = make_variants()
    if args.variants:
        unknown = [name for name in args.variants if name not in variants]
        if unknown:
            raise SystemExit(f"unknown variants {unknown} of the {args.table} table; choose from {list(variants)}")
        variants = {name: variants[name] for name in args.variants}
    train_set = load_embedded("train")
    if args.train_per_class:
        train_set = few_shot_subset(train_set, args.train_per_class, args.subset_seed)
    val_set = load_embedded("val")
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment, validate_every_epoch=False
    )
    # the other tables' runs with the same architecture and recipe are not trained twice
    reuse = (
        []
        if args.no_reuse
        else [record for table, (_, path) in TABLES.items() if table != args.table for record in load_results(path)]
    )
    records = run_ablation(
        variants,
        train_set,
        val_set,
        config,
        args.seeds,
        results_path=args.out or default_out,
        reuse=reuse,
        copy_same_runs=not args.no_reuse,
    )
    print(summarize([r for r in records if r["variant"] in variants and r["seed"] in args.seeds]).format())
    return records


if __name__ == "__main__":
    main()
