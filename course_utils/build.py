"""The course's builds: executed notebooks, the course site, offline slides, the course map.

    python -m course_utils.build course   # run every notebook into build/course, then the site
    python -m course_utils.build site     # the site (build/site) from build/course's executed copies
    python -m course_utils.build slides   # one offline reveal.js deck per notebook (build/slides)
    python -m course_utils.build map      # the course map as a Markdown table (the README's)
    python -m course_utils.build slide-types  # write slide types into new cells of the notebooks

**Executed notebooks.** ``course`` runs every ``notebooks/NN_*.ipynb`` in order in a fresh
kernel (working directory: ``notebooks/``) and writes the executed copies and ``timings.json``
(seconds per notebook) to ``build/course``. The committed notebooks are not touched. ``site``
and ``slides`` reuse an executed copy when it is newer than its notebook and execute only the
stale ones.

**Site.** A Jupyter Book (Sphinx, ``sphinx-book-theme``): the course map as its front page, one
chapter per notebook with its figures, a page with a picture of each explorer and the command
that runs it live, the homework assignments; navigation and full-text search work offline
(``build/site/_build/html/index.html``).

**Slides.** Each numbered notebook becomes ``<name>.slides.html`` (nbconvert's reveal.js
exporter). Every script the decks load (reveal.js, require.js, jQuery, MathJax) is copied from
``node_modules/`` (npm packages pinned in ``package.json``; ``make setup`` installs them) into
``_vendor/`` beside the decks, so the folder works offline and can be copied as a whole. Cells
without a ``slideshow`` slide type get one on the fly (:func:`assign_slide_types`; the committed
notebooks carry the same types, so RISE shows the same slides live): a markdown cell starting
with a ``#`` or ``##`` heading opens a slide, a deeper heading or a code cell that draws a figure
a sub-slide (below, in reveal.js), another code cell a fragment (revealed on the next click);
other markdown continues the slide. Slides scroll when content is taller than the screen.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import progress_bar

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
HOMEWORK_DIR = REPO_ROOT / "homework"
#: Where ``npm ci`` (``make setup``) puts the scripts of the slides and the site's MathJax.
NODE_MODULES = REPO_ROOT / "node_modules"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
#: The notebook whose widgets the site shows as pictures (and the decks leave out).
EXPLORE_NOTEBOOK = "explore"

__all__ = [
    "COURSE_MAP",
    "CourseEntry",
    "NOTEBOOK_DIR",
    "course_notebooks",
    "run_notebook",
    "slowest_cell",
    "execute_course",
    "executed_copies",
    "vendor_scripts",
    "build_site",
    "explorer_pictures",
    "assign_slide_types",
    "build_slides",
    "write_slide_types",
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
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        # the kernel's own log shows errors only (not its warning about TCP on loopback, once per notebook)
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        # no widget state: rendering it would load the widget manager from a CDN; static pages
        # show the widgets' text instead (the explorers get pictures, see explorer_pictures)
        store_widget_state=False,
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


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _is_fresh(notebook: Path, executed_copy: Path) -> bool:
    return executed_copy.exists() and executed_copy.stat().st_mtime >= notebook.stat().st_mtime


def execute_course(
    out_dir: Path, notebooks: Sequence[Path] | None = None, reuse: bool = False, timeout: int = 600
) -> list[Path]:
    """Execute ``notebooks`` (default: all of the course) into ``out_dir``; returns the executed copies.

    Each executed ``.ipynb`` is written atomically, its seconds merged into ``timings.json`` and
    its slowest cell printed. With ``reuse``, a copy newer than its notebook is kept as it is.
    """
    import nbformat

    from .data.core import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    notebooks = list(notebooks or course_notebooks())
    stale = [path for path in notebooks if not (reuse and _is_fresh(path, out_dir / path.name))]
    if reuse and len(stale) < len(notebooks):
        print(f"reusing {len(notebooks) - len(stale)} executed notebooks in {out_dir} (newer than their sources)")
    for path in progress_bar(stale, desc="executing notebooks"):
        notebook, seconds = run_notebook(path, timeout)
        cell, cell_seconds = slowest_cell(notebook)
        with atomic_write(out_dir / path.name, "w") as file:
            nbformat.write(notebook, file)
        timings[path.stem] = round(seconds, 1)
        timings_path.write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
        slowest = f" (slowest cell {cell}: {cell_seconds:.1f} s)" if cell >= 0 else ""
        print(f"{path.name}: {seconds:.1f} s{slowest} -> {out_dir / path.name}")
    return [out_dir / path.name for path in notebooks]


def _without_explore(notebooks: Sequence[Path] | None) -> list[Path]:
    """``notebooks`` (default: all of the course) but the explorers' notebook, whose widgets need a
    kernel: the site pictures it instead, and it has no deck."""
    return [path for path in (notebooks or course_notebooks()) if path.stem != EXPLORE_NOTEBOOK]


def executed_copies(executed_dir: Path, notebooks: Sequence[Path] | None = None) -> list[Path]:
    """The executed copies in ``executed_dir`` of ``notebooks``, executing the stale ones first."""
    return execute_course(executed_dir, notebooks, reuse=True)


# --------------------------------------------------------------------------------------------
# Scripts served locally
# --------------------------------------------------------------------------------------------

#: npm package -> its files and folders that the decks or the site load (copied as they are):
#: reveal.js with its notes plugin, require.js, jQuery, MathJax 2 with the TeX input and
#: CommonHTML output of nbconvert's configuration, MathJax 3's TeX/CommonHTML bundle.
_VENDOR_FILES = {
    "reveal.js": ["dist", "plugin/notes"],
    "requirejs": ["require.js"],
    "jquery": ["dist/jquery.min.js"],
    "mathjax": [
        "MathJax.js",
        "config/TeX-AMS_CHTML-full.js",
        "config/Safe.js",
        "extensions",
        "jax/input/TeX",
        "jax/output/CommonHTML",
        "jax/element",
        "fonts/HTML-CSS/TeX/woff",
        "localization/en",
    ],
    "mathjax3": [
        "es5/tex-chtml.js",
        "es5/output/chtml/fonts/woff-v2",
        "es5/input/tex/extensions",
        "es5/ui",
        "es5/a11y",
    ],
}


#: What the decks load (nbconvert's reveal template speaks MathJax 2; the Sphinx site uses MathJax 3).
_DECK_PACKAGES = ("reveal.js", "requirejs", "jquery", "mathjax")


def vendor_scripts(dest: Path, packages: Sequence[str] = _DECK_PACKAGES, node_modules: Path = NODE_MODULES) -> Path:
    """Copy the files the decks and the site load from ``node_modules/<package>`` into
    ``dest/<package>`` (skipped when already there); returns ``dest``."""
    missing = [package for package in packages if not (node_modules / package / "package.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} not found in {node_modules}: the offline slides and site serve them locally. "
            f"Run `make setup` (it runs `npm ci`; Node.js and npm come from your package manager) "
            f"or `npm ci` in {node_modules.parent}"
        )
    for package in packages:
        for relative in _VENDOR_FILES[package]:
            source, target = node_modules / package / relative, Path(dest) / package / relative
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
    return Path(dest)


# --------------------------------------------------------------------------------------------
# The site
# --------------------------------------------------------------------------------------------

_SITE_TITLE = "Visualizing and Understanding Convolutional Networks, hands-on"

_SITE_CONFIG = f"""\
# Written by course_utils.build; the notebooks come executed (build/course), never run here.
title: "{_SITE_TITLE}"
author: the course's authors
only_build_toc_files: true
execute:
  execute_notebooks: "off"
html:
  use_repository_button: false
  use_issues_button: false
  use_edit_page_button: false
  use_download_button: false
  home_page_in_navbar: true
launch_buttons:
  notebook_interface: jupyterlab
  binderhub_url: ""
  colab_url: ""
  thebe: false
sphinx:
  config:
    html_show_copyright: false
    html_show_sphinx: false
    # MathJax from the site's own folder (npm's mathjax package), never a CDN; outside _static,
    # whose every .js file Jupyter Book would load on every page
    html_extra_path: [_local_scripts]
    mathjax_path: ../mathjax3/es5/tex-chtml.js
"""

_INTRO = """\
# {title}

Zeiler & Fergus (ECCV 2014) reproduced in PyTorch. Each chapter is a notebook of the course,
executed on the embedded dataset with the shipped model; read them in order. To run and change
them yourself, clone the course and open the Lab at the repository root with `make lab`
(notebooks and homework are both there).

## The chapters

{course_map}
## Beyond the chapters

* [Explorers](explorers.md): pictures of the three interactive explorers and the command that
  runs them live (`make explore`).
* [Homework](homework/index.md): the assignments, how they are checked and how to submit.
"""

_EXPLORERS = """\
# Explorers

Three explorers let you choose the layer, feature map, image, occluder position or
transformation yourself. They need a running Python kernel, so the site shows a picture of
each; run them live with

```bash
make explore   # the explorers as an app (Voila) at http://localhost:8866, no code shown
make lab       # or open notebooks/explore.ipynb in JupyterLab
```

{sections}
"""

_EXPLORER_TEXT = {
    "deconvnet": (
        "Deconvnet explorer (Fig. 2)",
        "Pick a layer and a feature map: the top-9 projections from the validation set beside "
        "their image patches, and the projection of any image you choose.",
    ),
    "occlusion": (
        "Occlusion explorer (Fig. 7)",
        "Move a grey square over the image: P(correct class) and the most probable classes follow it.",
    ),
    "invariance": (
        "Invariance explorer (Fig. 5)",
        "Translate, scale or rotate an image: the distance of the layer-1 and layer-7 features "
        "from the original's and P(true class), along the whole range.",
    ),
}


def explorer_pictures(out_dir: Path) -> dict[str, Path]:
    """PNG pictures of the three explorers on the shipped model and the embedded validation
    images (as ``notebooks/explore.ipynb`` opens them) -> ``{name: out_dir/explorer_<name>.png}``."""
    import torch

    from . import data, models
    from .data.embedded import FACE_CLASSES
    from .widgets import deconvnet_explorer, invariance_explorer, occlusion_explorer

    model, _ = models.load_shipped_model("final")
    val_set = data.load_dataset("embedded", "val")
    is_face = torch.tensor([name in FACE_CLASSES for name in val_set.class_names])[val_set.labels]
    # Outside a kernel every redraw's clear_output prints a terminal escape; keep them off the build's output.
    with contextlib.redirect_stdout(io.StringIO()):
        explorers = {
            "deconvnet": deconvnet_explorer(model, val_set, progress=False),
            "occlusion": occlusion_explorer(model, val_set, image=int(torch.nonzero(is_face)[0]), window=16),
            "invariance": invariance_explorer(model, val_set),
        }
        explorers["deconvnet"].layer.value = "conv3"  # a layer whose projections differ between images
        explorers["deconvnet"].channel.value = 5
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for name, explorer in explorers.items():
        pictures[name] = out_dir / f"explorer_{name}.png"
        pictures[name].write_bytes(explorer.picture())
    return pictures


def _homework_pages(source: Path, homework_dir: Path) -> list[str]:
    """Copy each assignment's README to ``source/homework/<name>.md``; returns the toc entries."""
    (source / "homework").mkdir(parents=True, exist_ok=True)
    entries, rows = [], []
    for readme in sorted(homework_dir.glob("*/README.md")):
        name = readme.parent.name
        text = readme.read_text(encoding="utf-8")
        (source / "homework" / f"{name}.md").write_text(text, encoding="utf-8")
        title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), name)
        entries.append(f"homework/{name}")
        rows.append(f"* [{title}]({name}.md): `homework/{name}/` in the repository")
    (source / "homework" / "index.md").write_text(
        "# Homework\n\nEach assignment is a folder of `homework/`: a module with the functions to "
        "write, a notebook that walks through them with a check after each step, and the public "
        "checks as pytest tests. Open them with `make lab`; `make handouts` zips them for students.\n\n"
        + "\n".join(rows)
        + "\n",
        encoding="utf-8",
    )
    return entries


def build_site(
    out_dir: Path,
    executed_dir: Path,
    notebooks: Sequence[Path] | None = None,
    homework_dir: Path = HOMEWORK_DIR,
    course_map: Mapping[str, CourseEntry] | None = None,
    pictures: bool = True,
) -> Path:
    """Build the course site (see the module docstring) into ``out_dir``; returns its index page.

    Args:
        executed_dir: the executed notebooks (``build/course``); stale or missing ones run first.
        notebooks: the chapters (default: the numbered notebooks of the course).
        pictures: draw the explorers' pictures (needs the shipped model); else the page has only text.
    """
    out_dir, course_map = Path(out_dir), COURSE_MAP if course_map is None else course_map
    chapters = _without_explore(notebooks)
    copies = executed_copies(executed_dir, chapters)
    source = out_dir / "source"
    if source.exists():
        shutil.rmtree(source)
    (source / "notebooks").mkdir(parents=True)
    for copy_path in copies:
        shutil.copy2(copy_path, source / "notebooks" / copy_path.name)
    vendor_scripts(source / "_local_scripts", ["mathjax3"])
    timings_path = Path(executed_dir) / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else None
    chapter_map = {path.stem: course_map[path.stem] for path in chapters if path.stem in course_map}
    table = course_map_markdown(timings, chapter_map, link=lambda name: f"notebooks/{name}.ipynb")
    (source / "intro.md").write_text(_INTRO.format(title=_SITE_TITLE, course_map=table), encoding="utf-8")
    sections = []
    drawn = explorer_pictures(source / "explorers") if pictures else {}
    for name, (heading, text) in _EXPLORER_TEXT.items():
        picture = f"\n\n![the {name} explorer](explorers/{drawn[name].name})" if name in drawn else ""
        sections.append(f"## {heading}\n\n{text}{picture}\n")
    (source / "explorers.md").write_text(_EXPLORERS.format(sections="\n".join(sections)), encoding="utf-8")
    homework = _homework_pages(source, homework_dir)
    toc = ["format: jb-book", "root: intro", "parts:", "  - caption: The paper, notebook by notebook", "    chapters:"]
    toc += [f"      - file: notebooks/{path.stem}" for path in chapters]
    toc += [
        "  - caption: Explore and practise",
        "    chapters:",
        "      - file: explorers",
        "      - file: homework/index",
    ]
    toc += ["        sections:"] + [f"          - file: {entry}" for entry in homework]
    (source / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    (source / "_config.yml").write_text(_SITE_CONFIG, encoding="utf-8")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(source)]
    result = subprocess.run(
        [*command, "--path-output", str(out_dir), "--warningiserror", "--quiet"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"jupyter-book failed ({' '.join(command)}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return out_dir / "_build" / "html" / "index.html"


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


def write_slide_types(executed_dir: Path, notebooks: Sequence[Path] | None = None) -> list[Path]:
    """Give every cell of the committed ``notebooks`` (default: the numbered ones) that has no
    slide type the one :func:`assign_slide_types` picks from its executed copy (figures are
    only known after a run), so that RISE shows the same slides live; returns the notebooks changed."""
    import nbformat

    decks = _without_explore(notebooks)
    changed = []
    for path, copy_path in zip(decks, executed_copies(executed_dir, decks)):
        source = nbformat.read(path, as_version=4)
        typed = assign_slide_types(nbformat.read(copy_path, as_version=4))
        missing = [i for i, cell in enumerate(source.cells) if "slide_type" not in cell.metadata.get("slideshow", {})]
        for index in missing:
            source.cells[index].metadata["slideshow"] = {"slide_type": typed.cells[index].metadata.slideshow.slide_type}
        if missing:
            nbformat.write(source, path)
            changed.append(path)
            print(f"{path.name}: slide types for {len(missing)} cells")
    return changed


def build_slides(out_dir: Path, executed_dir: Path, notebooks: Sequence[Path] | None = None) -> list[Path]:
    """Write ``out_dir/<name>.slides.html`` for each numbered notebook (default: all of the
    course) and the scripts they load into ``out_dir/_vendor``; returns the decks.

    Args:
        executed_dir: the executed notebooks (``build/course``); stale or missing ones run first.
    """
    import nbformat
    from nbconvert import SlidesExporter

    out_dir = Path(out_dir)
    decks = _without_explore(notebooks)
    copies = executed_copies(executed_dir, decks)
    vendor_scripts(out_dir / "_vendor")
    exporter = SlidesExporter(
        template_name="course_reveal",
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        reveal_url_prefix="_vendor/reveal.js",
        reveal_scroll=True,
        reveal_theme="white",  # its fonts ship with reveal.js (the default theme's come from Google Fonts)
        require_js_url="_vendor/requirejs/require.js",
        jquery_url="_vendor/jquery/dist/jquery.min.js",
        mathjax_url="_vendor/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    )
    written = []
    for copy_path in progress_bar(copies, desc="building slides"):
        body, _ = exporter.from_notebook_node(assign_slide_types(nbformat.read(copy_path, as_version=4)))
        deck = out_dir / f"{copy_path.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        written.append(deck)
    print(
        f"{len(written)} decks and the scripts they load (_vendor/) in {out_dir}; open {written[0]}" if written else ""
    )
    return written


# --------------------------------------------------------------------------------------------
# The course map as Markdown, and the command line
# --------------------------------------------------------------------------------------------


def course_map_markdown(
    timings: Mapping[str, float] | None = None,
    course_map: Mapping[str, CourseEntry] = COURSE_MAP,
    link: Callable[[str], str] | None = None,
) -> str:
    """The course map as a Markdown table (for the README and the site's front page), with a
    run-time column when ``timings`` (``{notebook: seconds}``, ``build/course/timings.json``) is
    given; ``link(name)`` makes each notebook's name a link to that address."""
    header = "| notebook | paper | what you will see |" + (" run time |" if timings else "")
    rule = "|---|---|---|" + ("---|" if timings else "")
    lines = [header, rule]
    for name, entry in course_map.items():
        title = f"[`{name}.ipynb`]({link(name)})" if link else f"`{name}.ipynb`"
        row = f"| {title} | {entry.paper} | {entry.learner_sees} |"
        if timings:
            row += f" {_format_seconds(timings[name])} |" if name in timings else " - |"
        lines.append(row)
    return "\n".join(lines) + "\n"


_COMMANDS = ("course", "site", "slides", "slide-types", "map")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS:  # --help, or no or an unknown command: say which there are
        top = argparse.ArgumentParser(
            prog="python -m course_utils.build",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        top.add_argument("command", choices=_COMMANDS, help="what to build (each has its own --help)")
        top.parse_args(argv[:1])
    command = argv.pop(0)
    parser = argparse.ArgumentParser(
        prog=f"python -m course_utils.build {command}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command == "map":
        parser.add_argument("--timings", help="timings.json of `course`, for the run-time column")
        args = parser.parse_args(argv)
        timings = json.loads(Path(args.timings).read_text()) if args.timings else None
        print(course_map_markdown(timings), end="")
        return
    parser.add_argument("notebooks", nargs="*", help="notebooks (default: all of notebooks/)")
    parser.add_argument(
        "--executed", default="build/course", help="executed notebooks and timings.json (default: build/course)"
    )
    if command in ("course", "site"):
        parser.add_argument("--site", default="build/site", help="the site's folder (default: build/site)")
    if command == "slides":
        parser.add_argument("--out", default="build/slides", help="the decks' folder (default: build/slides)")
    args = parser.parse_args(argv)
    notebooks = [Path(p) for p in args.notebooks] or None
    try:
        if command == "course":
            execute_course(Path(args.executed), notebooks)
        if command in ("course", "site"):
            print(f"site written; open {build_site(Path(args.site), Path(args.executed), notebooks)}")
        if command == "slides":
            build_slides(Path(args.out), Path(args.executed), notebooks)
        if command == "slide-types":
            write_slide_types(Path(args.executed), notebooks)
    except FileNotFoundError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
