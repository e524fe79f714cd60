"""The course's builds: the static site with its index, reveal.js slides, the course map."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.build import (
    COURSE_MAP,
    NOTEBOOK_DIR,
    REVEAL_CDN,
    CourseEntry,
    assign_slide_types,
    build_course,
    build_slides,
    course_map_markdown,
    course_notebooks,
    main,
)

TINY_MAP = {"01_alpha": CourseEntry("Fig. 99", "alpha things & more")}


def code_cell(source: str, outputs: list | None = None, **metadata):
    cell = nbformat.v4.new_code_cell(source, metadata=metadata)
    cell.outputs = outputs or []
    return cell


def png_output():
    return nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})


def text_output(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def test_slide_types_follow_headings_code_and_figures():
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Title\n\nWhat this is."),
            nbformat.v4.new_markdown_cell("Prose under the title."),
            code_cell("print(1)", [text_output("1\n")]),
            code_cell("plot()", [png_output()]),
            nbformat.v4.new_markdown_cell("### A detail"),
            nbformat.v4.new_markdown_cell("\n## Part two"),
            nbformat.v4.new_markdown_cell("#hashtag is not a heading"),
            code_cell("setup()", slideshow={"slide_type": "skip"}),
            code_cell("   "),
            nbformat.v4.new_raw_cell("raw"),
        ]
    )
    slides = assign_slide_types(notebook)
    assert [cell.metadata.slideshow.slide_type for cell in slides.cells] == [
        "slide",
        "-",
        "fragment",
        "subslide",
        "subslide",
        "slide",
        "-",
        "skip",
        "skip",
        "-",
    ]
    assert "slideshow" not in notebook.cells[0].metadata  # the notebook itself is untouched


def test_the_first_shown_cell_opens_a_slide():
    notebook = nbformat.v4.new_notebook(
        cells=[code_cell("", []), code_cell("import torch"), nbformat.v4.new_markdown_cell("text")]
    )
    assert [cell.metadata.slideshow.slide_type for cell in assign_slide_types(notebook).cells] == ["skip", "slide", "-"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of two tiny notebooks and the site built from it (two kernels run)."""
    folder = tmp_path_factory.mktemp("notebooks")
    alpha = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Alpha\n\nA tiny notebook."),
            code_cell("print('hello', 6 * 7)"),
            nbformat.v4.new_markdown_cell("## Second slide\n\nMore text."),
            code_cell("print('from', __import__('os').path.basename(__import__('os').getcwd()))"),
        ]
    )
    extra = nbformat.v4.new_notebook(cells=[code_cell("x = 1")])
    nbformat.write(alpha, folder / "01_alpha.ipynb")
    nbformat.write(extra, folder / "extra.ipynb")
    out = tmp_path_factory.mktemp("site")
    build_course(out, course_notebooks(folder), course_map=TINY_MAP)
    return folder, out


def test_site_index_lists_every_notebook_with_map_entry_and_run_time(site):
    folder, out = site
    index = (out / "index.html").read_text()
    rows = re.findall(
        r"<tr><td>(\d+)</td><td><a href=\"([^\"]+)\">([^<]+)</a></td><td>([^<]*)</td>"
        r"<td>([^<]*)</td><td class=\"time\">(\d+ s)</td></tr>",
        index,
    )
    assert [row[:5] for row in rows] == [
        ("1", "01_alpha.html", "01_alpha.ipynb", "Fig. 99", "alpha things &amp; more"),
        ("2", "extra.html", "extra.ipynb", "-", "(not in the course map yet)"),
    ]
    assert "All 2 notebooks ran in" in index
    timings = json.loads((out / "timings.json").read_text())
    assert sorted(timings) == ["01_alpha", "extra"] and all(seconds > 0 for seconds in timings.values())
    page = (out / "01_alpha.html").read_text()
    assert "hello 42" in page  # executed, with its outputs
    assert f"from {folder.name}" in page  # in the notebook's own folder
    assert nbformat.read(folder / "01_alpha.ipynb", as_version=4).cells[1].outputs == []  # source untouched


def test_slides_from_the_executed_copies_have_reveal_sections(site, tmp_path):
    folder, out = site
    [slides] = build_slides(tmp_path, [folder / "01_alpha.ipynb"], executed=out)
    assert slides == tmp_path / "01_alpha.slides.html"
    deck = slides.read_text()
    assert f"{REVEAL_CDN}/dist/reveal.js" in deck or f"{REVEAL_CDN}/js/reveal.js" in deck
    assert deck.count("<section") >= 2  # two '#'/'##' headings, two slides
    assert 'class="fragment"' in deck  # code cells are fragments
    assert "hello 42" in deck
    assert re.search(r"scroll\s*=\s*true|scroll:\s*true", deck, re.IGNORECASE)


def test_slides_without_an_executed_copy_say_what_to_build(site, tmp_path, capsys):
    folder, _ = site
    with pytest.raises(SystemExit):
        main(
            ["slides", "--out", str(tmp_path), "--executed", str(tmp_path / "missing"), str(folder / "01_alpha.ipynb")]
        )
    assert "no executed copy of 01_alpha.ipynb" in capsys.readouterr().err


def test_course_map_as_markdown_with_run_times():
    course_map = {"01_a": CourseEntry("Fig. 1", "one"), "02_b": CourseEntry("Tab. 2", "two")}
    assert course_map_markdown({"01_a": 12.4, "02_b": 150.0}, course_map) == (
        "| notebook | paper | what you will see | run time |\n"
        "|---|---|---|---|\n"
        "| `01_a.ipynb` | Fig. 1 | one | 12 s |\n"
        "| `02_b.ipynb` | Tab. 2 | two | 2.5 min |\n"
    )
    assert course_map_markdown(None, course_map).splitlines()[0] == "| notebook | paper | what you will see |"
    assert "| `02_b.ipynb` | Tab. 2 | two | - |" in course_map_markdown({"01_a": 1.0}, course_map)


def test_map_command_prints_every_entry(capsys, tmp_path):
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps({"01_training": 30.0}))
    main(["map", "--timings", str(timings)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(COURSE_MAP)
    assert lines[2].startswith("| `01_training.ipynb` | Sec. 3, training recipe |") and lines[2].endswith("| 30 s |")


def test_every_course_notebook_is_in_the_course_map():
    missing = [path.name for path in course_notebooks(NOTEBOOK_DIR) if path.stem not in COURSE_MAP]
    assert not missing, f"add these notebooks to course_utils.build.COURSE_MAP: {missing}"


def test_slowest_cell_reads_nbclient_timings():
    import nbformat

    from course_utils.build import slowest_cell

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# title"),
            nbformat.v4.new_code_cell("a = 1"),
            nbformat.v4.new_code_cell("b = 2"),
        ]
    )
    notebook.cells[1].metadata["execution"] = {
        "iopub.execute_input": "2026-12-02T10:00:00.000000Z",
        "shell.execute_reply": "2026-12-02T10:00:02.500000Z",
    }
    notebook.cells[2].metadata["execution"] = {
        "iopub.execute_input": "2026-12-02T10:00:03.000000Z",
        "shell.execute_reply": "2026-12-02T10:00:13.250000Z",
    }
    assert slowest_cell(notebook) == (2, 10.25)
    assert slowest_cell(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])) == (-1, 0.0)
