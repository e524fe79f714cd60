"""The course's builds: the static site with its index, reveal.js slides, the course map."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.build import (
    COURSE_MAP,
    NOTEBOOK_DIR,
    CourseEntry,
    assign_slide_types,
    build_site,
    build_slides,
    course_map_markdown,
    course_notebooks,
    execute_course,
    executed_copies,
    main,
    vendor_scripts,
    write_slide_types,
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
def executed(tmp_path_factory) -> tuple[Path, Path]:
    """A folder of two tiny notebooks and their executed copies (two kernels run)."""
    folder = tmp_path_factory.mktemp("notebooks")
    alpha = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Alpha\n\nA tiny notebook about $\\Delta$."),
            code_cell("print('hello', 6 * 7)"),
            nbformat.v4.new_markdown_cell("## Second slide\n\nMore text about zeppelins."),
            code_cell("print('from', __import__('os').path.basename(__import__('os').getcwd()))"),
        ]
    )
    extra = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Extra"), code_cell("x = 1")])
    nbformat.write(alpha, folder / "01_alpha.ipynb")
    nbformat.write(extra, folder / "02_extra.ipynb")
    out = tmp_path_factory.mktemp("course")
    execute_course(out, course_notebooks(folder))
    return folder, out


def test_executed_copies_have_outputs_and_timings_and_the_sources_stay_clean(executed):
    folder, out = executed
    timings = json.loads((out / "timings.json").read_text())
    assert sorted(timings) == ["01_alpha", "02_extra"] and all(seconds > 0 for seconds in timings.values())
    copy = nbformat.read(out / "01_alpha.ipynb", as_version=4)
    assert copy.cells[1].outputs[0].text == "hello 42\n"  # executed, with its outputs
    assert copy.cells[3].outputs[0].text == f"from {folder.name}\n"  # in the notebook's own folder
    assert nbformat.read(folder / "01_alpha.ipynb", as_version=4).cells[1].outputs == []  # source untouched


def test_executed_copies_are_reused_until_their_notebook_changes(executed, tmp_path, capsys):
    folder, out = executed
    notebooks = [tmp_path / path.name for path in course_notebooks(folder)]
    for source, target in zip(course_notebooks(folder), notebooks):
        target.write_bytes(source.read_bytes())
        (tmp_path / "course").mkdir(exist_ok=True)
    course = tmp_path / "course"
    execute_course(course, notebooks)
    stamps = {path.name: path.stat().st_mtime_ns for path in course.glob("*.ipynb")}
    capsys.readouterr()
    executed_copies(course, notebooks)
    assert {path.name: path.stat().st_mtime_ns for path in course.glob("*.ipynb")} == stamps
    assert "reusing 2 executed notebooks" in capsys.readouterr().out
    time.sleep(0.01)
    notebooks[1].touch()  # an edited notebook runs again, the other is reused
    executed_copies(course, notebooks)
    after = {path.name: path.stat().st_mtime_ns for path in course.glob("*.ipynb")}
    assert after["01_alpha.ipynb"] == stamps["01_alpha.ipynb"] and after["02_extra.ipynb"] > stamps["02_extra.ipynb"]
    assert "reusing 1 executed notebooks" in capsys.readouterr().out


def script_sources(page: str) -> list[str]:
    return re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page) + re.findall(r"<link[^>]*\shref=\"([^\"]+)\"", page)


def test_the_site_is_a_jupyter_book_with_chapters_homework_search_and_local_scripts(executed, tmp_path):
    folder, out = executed
    homework = tmp_path / "homework"
    (homework / "hw9_demo").mkdir(parents=True)
    (homework / "hw9_demo" / "README.md").write_text("# Homework 9: demo\n\nWrite `f`.\n")
    index = build_site(
        tmp_path / "site", out, course_notebooks(folder), homework_dir=homework, course_map=TINY_MAP, pictures=False
    )
    assert index == tmp_path / "site" / "_build" / "html" / "index.html"
    html_dir = index.parent
    assert "url=intro.html" in index.read_text()  # Jupyter Book's index forwards to the front page
    front = (html_dir / "intro.html").read_text()
    assert "Fig. 99" in front and "alpha things &amp; more" in front  # the course map
    assert 'href="notebooks/01_alpha.html"' in front  # navigation to every chapter
    assert 'href="notebooks/02_extra.html"' in front and 'href="homework/hw9_demo.html"' in front
    chapter = (html_dir / "notebooks" / "01_alpha.html").read_text()
    assert "hello 42" in chapter  # the executed outputs
    assert "Homework 9: demo" in (html_dir / "homework" / "hw9_demo.html").read_text()
    assert '"zeppelin"' in (html_dir / "searchindex.js").read_text()  # full-text search (stemmed), offline
    for page in (front, chapter):
        remote = [source for source in script_sources(page) if source.startswith(("http:", "https:", "//"))]
        assert not remote, f"the site loads {remote} from the network"
    assert '"../_static/../mathjax3/es5/tex-chtml.js' in chapter
    assert (html_dir / "mathjax3" / "es5" / "tex-chtml.js").exists()


def test_offline_slides_load_every_script_from_their_own_folder(executed, tmp_path):
    folder, out = executed
    [deck] = build_slides(tmp_path, out, [folder / "01_alpha.ipynb"])
    assert deck == tmp_path / "01_alpha.slides.html"
    page = deck.read_text()
    sources = script_sources(page) + re.findall(r'"(_vendor/[^"]+\.js)"', page)
    assert "_vendor/reveal.js/dist/reveal.js" in sources and "_vendor/requirejs/require.js" in sources
    for source in sources:
        assert not source.startswith(("http:", "https:", "//")), f"the deck loads {source} from the network"
        assert (tmp_path / source.split("?")[0]).is_file(), f"{source} is not beside the deck"
    assert "cdnjs" not in page and "unpkg" not in page
    assert page.count("<section") >= 2  # two '#'/'##' headings, two slides
    assert 'class="fragment"' in page  # code cells are fragments
    assert "hello 42" in page


def test_slide_types_are_written_into_the_committed_notebooks_from_their_executed_copies(executed, tmp_path):
    folder, out = executed
    notebook = tmp_path / "01_alpha.ipynb"
    source = nbformat.read(folder / "01_alpha.ipynb", as_version=4)
    source.cells[2].metadata["slideshow"] = {"slide_type": "notes"}  # the author's choice stays
    nbformat.write(source, notebook)
    course = tmp_path / "course"
    course.mkdir()
    (course / notebook.name).write_bytes((out / notebook.name).read_bytes())  # a fresh executed copy
    assert write_slide_types(course, [notebook]) == [notebook]
    types = [cell.metadata.slideshow.slide_type for cell in nbformat.read(notebook, as_version=4).cells]
    assert types == ["slide", "fragment", "notes", "fragment"]
    assert write_slide_types(course, [notebook]) == []  # nothing left to do


def test_without_the_npm_packages_the_error_says_how_to_install_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reveal\.js.*make setup.*npm ci"):
        vendor_scripts(tmp_path / "out", ["reveal.js"], node_modules=tmp_path / "node_modules")


def test_build_without_a_known_command_names_the_commands(capsys):
    for argv, message in ((["sitee"], "invalid choice: 'sitee'"), (["--out", "x"], "arguments are required: command")):
        with pytest.raises(SystemExit):
            main(argv)
        error = capsys.readouterr().err
        assert message in error and "{course,site,slides,slide-types,map}" in error


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
