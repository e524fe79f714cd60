"""Readable versions of the course: a static site for self-study, reveal.js slides for lectures.from .progress import progress_bar


    python -m course_utils.build --out build/course          # the site (the course's main job)
    python -m course_utils.build slides --out build/slides   # one reveal.js deck per notebook
    python -m course_utils.build map                          # the course map as a Markdown table

**Site.** Every ``notebooks/NN_*.ipynb`` runs in order in a fresh kernel (working directory:
``notebooks/``); ``--out`` receives the executed notebook and an HTML page of each,
``timings.json`` (seconds per notebook) and ``index.html``: per notebook its paper figure or
table and what the learner will see (from :data:`COURSE_MAP`, the course map's one home) and
its run time. The committed notebooks are not touched.

**Slides.** Each notebook becomes ``<name>.slides.html`` with nbconvert's SlidesExporter.
Cells without a ``slideshow`` slide type get one on the fly (:func:`assign_slide_types`): a
markdown cell starting with a ``#`` or ``##`` heading opens a slide, a deeper heading or a
code cell that draws a figure a sub-slide (below, in reveal.js), another code cell a fragment
(revealed on the next click); other markdown continues the slide. Slides scroll when content is
taller than the screen. By default the notebooks run first (so figures are on the slides);
``--executed build/course`` reuses the site's executed copies instead. The decks load
reveal.js from a CDN (``--reveal-prefix``, default nbconvert's unpkg.com URL), so showing them
needs a network; offline, unpack reveal.js 4.x beside the decks and pass
``--reveal-prefix reveal.js``.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import progress_bar

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
#: Where slides load reveal.js from (nbconvert's default CDN).
REVEAL_CDN = "https://unpkg.com/reveal.js@4.0.2"

__all__ = [
    "COURSE_MAP",
    "CourseEntry",
    "NOTEBOOK_DIR",
    "REVEAL_CDN",
    "course_notebooks",
    "run_notebook",
    "execute_notebook",
    "slowest_cell",
    "build_course",
    "assign_slide_types",
    "build_slides",
    "course_map_markdown",
    "main",
]


@dataclass(frozen=True)
class CourseEntry:
    """One notebook of the course map: the paper's figure or table and what the learner sees."""

    paper: str
    learner_sees: str


#: The course map: notebook name (without ``.ipynb``) -> what it reproduces and shows. The site's
#: index and ``python -m course_utils.build map`` (the README's table) are made from it.
COURSE_MAP: dict[str, CourseEntry] = {
    "01_training": CourseEntry(
        "Sec. 3, training recipe",
        "the embedded dataset (38 classes in five families, told apart by their parts), a linear "
        "classifier on pixels as baseline, the ZFNet-style model, a live training run with loss and "
        "accuracy curves, the shipped checkpoint's accuracy and its confusions by family",
    ),
    "02_switch_unpooling": CourseEntry(
        "Fig. 1, the deconvnet",
        "the reverse pass step by step on a tiny example (switches drawn on the grid, unpool -> "
        "rectify -> filter), switch vs mean unpooling, one projection through the trained net",
    ),
    "03_top9_projections": CourseEntry(
        "Fig. 2 (top-9 projections), Fig. 4 (feature evolution)",
        "for layers 1-5, the 9 strongest activations of feature maps projected to pixels beside "
        "their image patches and their class purity, their evolution over the training epochs "
        "(linear CKA), and the deconvnet beside saliency, guided backprop and activation maximization",
    ),
    "04_invariance": CourseEntry(
        "Fig. 5, invariance",
        "5 images translated, scaled and rotated: feature distances at layers 1 and 7 and "
        "P(true class) against the amount; the same over two images per class, by family",
    ),
    "05_occlusion": CourseEntry(
        "Fig. 7, occlusion sensitivity",
        "a grey square slid over images: the strongest layer-5 map's activation and projection, "
        "P(correct class) and the most probable class per position; object vs background over 20 images",
    ),
    "06_correspondence": CourseEntry(
        "Table 1, correspondence",
        "Delta for masking left eye, right eye, nose and random regions of face images at layers "
        "5 and 7, beside the paper's numbers",
    ),
    "07_depth_ablation": CourseEntry(
        "Table 3 (depth and size ablation), Fig. 6 (architecture selection)",
        "train and validation error of the network with layers removed or resized, over several "
        "seeds (mean +- std) with parameter counts; layer-1 filters of an AlexNet-like first layer "
        "(11x11, stride 4) beside the ZF choice (7x7, stride 2), dead filters, aliasing and the "
        "effect of the filter RMS clipping measured",
    ),
    "08_feature_generalization": CourseEntry(
        "Tables 4-7, feature generalization",
        "frozen features with a new softmax on held-out classes (new combinations of the families' "
        "parts) vs training from scratch, with few examples per class, and linear probes of every layer",
    ),
    "09_real_photos": CourseEntry(
        "Figs. 2, 5 and 7 on real photos",
        "torchvision's ImageNet AlexNet (downloaded on first use) on the sample photos that ship "
        "with the course: occluding the cat's face, rotating the coffee cup, the deconvnet beside "
        "guided backprop; top-9 projections on your own photo folder (COURSE_PHOTOS)",
    ),
    "explore": CourseEntry(
        "Figs. 2, 5 and 7, interactive",
        "explorers: pick a layer, channel and image for top-9 projections; move an occluder; "
        "slide a transformation along the invariance curves",
    ),
}


def course_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The course's notebooks in reading order (``NN_*.ipynb``, then the others)."""
    notebooks = sorted(folder.glob("*.ipynb"))
    return sorted(notebooks, key=lambda path: (not path.name[:2].isdigit(), path.name))


def run_notebook(path: Path, timeout: int = 600) -> tuple[Any, float]:
    """Execute ``path`` in a fresh kernel (working directory: its folder); returns the executed
    notebook node and the seconds it took. The file is not modified."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook, time.perf_counter() - start


def slowest_cell(notebook: Any) -> tuple[int, float]:
    """``(cell index, seconds)`` of the slowest code cell of an executed notebook (from the
    timing nbclient records in each cell's metadata); ``(-1, 0.0)`` without timings."""
    from datetime import datetime

    slowest = (-1, 0.0)
    for index, cell in enumerate(notebook.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        started, finished = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and started and finished:
            seconds = (
                datetime.fromisoformat(finished.rstrip("Z")) - datetime.fromisoformat(started.rstrip("Z"))
            ).total_seconds()
            slowest = max(slowest, (index, seconds), key=lambda pair: pair[1])
    return slowest


def execute_notebook(path: Path, out_dir: Path, timeout: int = 600) -> tuple[Path, float]:
    """Execute ``path`` and write the executed ``.ipynb`` and ``.html`` to ``out_dir``.
    Returns the HTML path and the seconds it took; prints the slowest cell."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook, seconds = run_notebook(path, timeout)
    cell, cell_seconds = slowest_cell(notebook)
    if cell >= 0:
        print(f"{path.name}: slowest cell {cell} took {cell_seconds:.1f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, out_dir / path.name)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    html_path = out_dir / path.with_suffix(".html").name
    html_path.write_text(body, encoding="utf-8")
    return html_path, seconds


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _index_page(rows: Sequence[tuple[Path, Path, float]], course_map: Mapping[str, CourseEntry]) -> str:
    """The site's ``index.html``: one table row per ``(notebook, html page, seconds)``."""
    cells = []
    for number, (notebook, page, seconds) in enumerate(rows, start=1):
        entry = course_map.get(notebook.stem)
        paper, sees = (entry.paper, entry.learner_sees) if entry else ("-", "(not in the course map yet)")
        cells.append(
            f'<tr><td>{number}</td><td><a href="{html.escape(page.name)}">{html.escape(notebook.name)}</a></td>'
            f"<td>{html.escape(paper)}</td><td>{html.escape(sees)}</td>"
            f'<td class="time">{_format_seconds(seconds)}</td></tr>'
        )
    total = sum(seconds for _, _, seconds in rows)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Visualizing and Understanding Convolutional Networks: the course</title>\n"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border-bottom:1px solid #ccc;padding:.4em .6em;"
        "vertical-align:top;text-align:left}.time{white-space:nowrap;text-align:right}</style>"
        "</head><body>\n"
        "<h1>Visualizing and Understanding Convolutional Networks, hands-on</h1>\n"
        "<p>Zeiler &amp; Fergus (ECCV 2014) reproduced in PyTorch. Each page is a notebook of the "
        "course, executed on the embedded dataset; read them in order, or open the notebooks "
        "themselves with <code>make lab</code> to run and change them. Homework assignments live in "
        "<code>homework/</code>.</p>\n"
        "<table><thead><tr><th>#</th><th>notebook</th><th>paper</th><th>what you will see</th>"
        "<th>run time</th></tr></thead><tbody>\n" + "\n".join(cells) + "\n</tbody></table>\n"
        f"<p>All {len(rows)} notebooks ran in {_format_seconds(total)}.</p>\n</body></html>\n"
    )


def build_course(
    out_dir: Path, notebooks: Sequence[Path] | None = None, course_map: Mapping[str, CourseEntry] = COURSE_MAP
) -> Path:
    """Execute ``notebooks`` (default: all of the course) into ``out_dir``; write
    ``timings.json`` and ``index.html`` (see the module docstring). Returns the index."""

    out_dir = Path(out_dir)
    rows = []
    for path in progress_bar(list(notebooks or course_notebooks()), desc="executing notebooks"):
        if path.stem not in course_map:
            print(f"note: {path.name} has no entry in course_utils.build.COURSE_MAP", file=sys.stderr)
        html_path, seconds = execute_notebook(path, out_dir)
        rows.append((path, html_path, seconds))
        print(f"{path.name}: {seconds:.1f} s -> {html_path}")
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {path.stem: round(seconds, 1) for path, _, seconds in rows}
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    index = out_dir / "index.html"
    index.write_text(_index_page(rows, course_map), encoding="utf-8")
    return index


# --------------------------------------------------------------------------------------------
# Slides
# --------------------------------------------------------------------------------------------

_FIGURE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def _heading_level(markdown: str) -> int:
    """Level of the heading that opens ``markdown`` (``# `` -> 1), 0 when it opens with none."""
    first = next((line.strip() for line in markdown.splitlines() if line.strip()), "")
    level = len(first) - len(first.lstrip("#"))
    return level if 0 < level <= 6 and first[level : level + 1] == " " else 0


def _default_slide_type(cell: Any) -> str:
    source = cell.get("source", "")
    if not source.strip():
        return "skip"
    if cell["cell_type"] == "markdown":
        level = _heading_level(source)
        return "slide" if level in (1, 2) else "subslide" if level else "-"
    if cell["cell_type"] == "code":
        draws = any(kind in output.get("data", {}) for output in cell.get("outputs", []) for kind in _FIGURE_TYPES)
        return "subslide" if draws else "fragment"
    return "-"


def assign_slide_types(notebook: Any) -> Any:
    """A copy of ``notebook`` in which every cell has ``metadata.slideshow.slide_type``.

    Types already set by the author are kept; the others follow the rules of the module
    docstring, and the first shown cell always opens a slide.
    """
    from nbformat import NotebookNode

    slides = copy.deepcopy(notebook)
    first = True
    for cell in slides.cells:
        slideshow = cell.setdefault("metadata", NotebookNode()).setdefault("slideshow", NotebookNode())
        if "slide_type" not in slideshow:
            slideshow["slide_type"] = _default_slide_type(cell)
            if first and slideshow["slide_type"] not in ("skip", "notes"):
                slideshow["slide_type"] = "slide"
        if slideshow["slide_type"] not in ("skip", "notes"):
            first = False
    return slides


def build_slides(
    out_dir: Path,
    notebooks: Sequence[Path] | None = None,
    executed: Path | None = None,
    reveal_prefix: str = REVEAL_CDN,
) -> list[Path]:
    """Write ``out_dir/<name>.slides.html`` for each notebook (default: all of the course).

    Args:
        executed: a folder holding executed copies (``build/course``); default: run each notebook.
        reveal_prefix: URL or relative path of reveal.js 4.x (see the module docstring).
    """
    import nbformat
    from nbconvert import SlidesExporter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = SlidesExporter(reveal_url_prefix=reveal_prefix, reveal_scroll=True)
    written = []
    for path in progress_bar(list(notebooks or course_notebooks()), desc="building slides"):
        if executed is None:
            notebook, _ = run_notebook(path)
        else:
            copy_path = Path(executed) / path.name
            if not copy_path.exists():
                raise FileNotFoundError(
                    f"no executed copy of {path.name} in {executed}; build the site first "
                    f"(python -m course_utils.build --out {executed}) or leave out --executed"
                )
            notebook = nbformat.read(copy_path, as_version=4)
        body, _ = exporter.from_notebook_node(assign_slide_types(notebook))
        slides = out_dir / f"{path.stem}.slides.html"
        slides.write_text(body, encoding="utf-8")
        written.append(slides)
        print(f"{path.name} -> {slides}")
    return written


# --------------------------------------------------------------------------------------------
# The course map as Markdown, and the command line
# --------------------------------------------------------------------------------------------


def course_map_markdown(
    timings: Mapping[str, float] | None = None, course_map: Mapping[str, CourseEntry] = COURSE_MAP
) -> str:
    """The course map as a Markdown table (for the README), with a run-time column when
    ``timings`` (``{notebook: seconds}``, e.g. a site build's ``timings.json``) is given."""
    header = "| notebook | paper | what you will see |" + (" run time |" if timings else "")
    rule = "|---|---|---|" + ("---|" if timings else "")
    lines = [header, rule]
    for name, entry in course_map.items():
        row = f"| `{name}.ipynb` | {entry.paper} | {entry.learner_sees} |"
        if timings:
            row += f" {_format_seconds(timings[name])} |" if name in timings else " - |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("slides", "map") else "site"
    parser = argparse.ArgumentParser(
        prog=f"python -m course_utils.build{'' if command == 'site' else ' ' + command}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command == "map":
        parser.add_argument("--timings", help="timings.json of a site build, for the run-time column")
        args = parser.parse_args(argv)
        timings = json.loads(Path(args.timings).read_text()) if args.timings else None
        print(course_map_markdown(timings), end="")
        return
    parser.add_argument(
        "--out", default="build/slides" if command == "slides" else "build/course", help="output folder (git-ignored)"
    )
    parser.add_argument("notebooks", nargs="*", help="notebooks (default: all of notebooks/)")
    if command == "slides":
        parser.add_argument("--executed", help="folder of executed copies to reuse (e.g. build/course)")
        parser.add_argument("--reveal-prefix", default=REVEAL_CDN, help=f"reveal.js location (default: {REVEAL_CDN})")
    args = parser.parse_args(argv)
    notebooks = [Path(p) for p in args.notebooks] or None
    if command == "slides":
        try:
            build_slides(Path(args.out), notebooks, Path(args.executed) if args.executed else None, args.reveal_prefix)
        except FileNotFoundError as error:
            parser.error(str(error))
        return
    print(f"open {build_course(Path(args.out), notebooks)}")


if __name__ == "__main__":
    main()
