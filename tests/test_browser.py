"""A real browser drives an explorer: JupyterLab on loopback, Chromium through Playwright.

The test writes a small notebook (a random-weight ZFNet, four random images, the occlusion
explorer), serves it with JupyterLab on 127.0.0.1 (a free port, a random token), opens it in
headless Chromium, runs the cell, presses the right arrow on the "left (x)"
slider and checks that the kernel redrew: the picture's ``src`` and the probability label
change and the label names the new position. A screenshot goes to build/browser/explorer.png.

Needs Chromium (Debian: ``apt-get install -y chromium``; or set ``CHROMIUM`` to its path) and
the ``playwright`` Python package; Playwright's own browser download is never used. Skips only
when no Chromium is found.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "build" / "browser" / "explorer.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEPS = 4  # right-arrow presses on the x slider

NOTEBOOK_SOURCE = """\
import torch

from course_utils.data import ImageTensorDataset
from course_utils.models import ZFNet
from course_utils.widgets import occlusion_explorer

torch.manual_seed(0)
model = ZFNet(image_size=32, conv_widths=(4, 6, 8, 8, 6), fc_widths=(16, 16), num_classes=3).eval()
images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
data = ImageTensorDataset(images, torch.tensor([0, 1, 2, 0]), ["red", "green", "blue"],
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
explorer = occlusion_explorer(model, data, window=8)
explorer"""


def find_chromium() -> str | None:
    for candidate in (
        os.environ.get("CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_chromium() -> str:
    """Chromium's path; the calling test is skipped, with how to install it, when there is none."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "Chromium not found (looked at $CHROMIUM, /usr/bin/chromium, chromium, chromium-browser on PATH); "
            "install it with `apt-get install -y chromium`"
        )
    return chromium


@contextlib.contextmanager
def chromium_page(chromium: str, width: int, height: int) -> Iterator[Any]:
    """A page of headless Chromium (``width`` x ``height``, 60 s default timeout); the browser
    is closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_notebook(folder: Path) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(
        cells=[new_code_cell(NOTEBOOK_SOURCE)],
        metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    )
    path = folder / "explorer.ipynb"
    nbformat.write(notebook, path)
    return path


def start_jupyterlab(folder: Path, port: int, token: str) -> subprocess.Popen:
    """JupyterLab serving ``folder`` on 127.0.0.1:``port``; its own settings, no update, news or
    extension-manager requests to the internet."""
    home = folder / "jupyter"
    (home / "config").mkdir(parents=True)
    (home / "config" / "jupyter_lab_config.json").write_text(
        json.dumps(
            {
                "LabApp": {
                    "news_url": None,
                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                    "extension_manager": "readonly",
                },
                "ServerApp": {"allow_root": os.geteuid() == 0},
            }
        )
    )  # CI containers often run as root
    notification_settings = (
        home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification_settings.parent.mkdir(parents=True)
    notification_settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    environment = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}",
    ]
    log = open(folder / "jupyterlab.log", "w")
    return subprocess.Popen(
        command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_until_serving(server: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200 and "started" in json.load(response):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def start_kernel_session(base_url: str, token: str, notebook: str) -> None:
    """Start the notebook's kernel through the REST API, so the page connects to it instead of
    racing to start its own (JupyterLab then starts two kernels and keeps the wrong one)."""
    request = urllib.request.Request(
        f"{base_url}/api/sessions",
        method="POST",
        data=json.dumps(
            {"path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"}}
        ).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201, f"starting a kernel session failed: HTTP {response.status}"


def stop(server: subprocess.Popen) -> None:
    """Terminate the server's process group (the server and its kernels), then kill what is left."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


@pytest.mark.browser
@pytest.mark.timeout(420)
def test_moving_the_occluder_slider_in_jupyterlab_redraws_the_explorer(tmp_path):
    chromium = require_chromium()
    from playwright.sync_api import expect

    notebook = write_notebook(tmp_path)
    port, token = free_port(), secrets.token_hex(16)
    server = start_jupyterlab(tmp_path, port, token)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, f"{base_url}/api/status?token={token}", tmp_path / "jupyterlab.log", 90)
        start_kernel_session(base_url, token, notebook.name)
        with chromium_page(chromium, 1280, 900) as page:
            page.goto(f"{base_url}/lab/tree/{notebook.name}?token={token}", timeout=120_000)
            cell = page.locator(".jp-Notebook .jp-Cell").first
            expect(cell).to_be_visible(timeout=120_000)
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(
                1, timeout=120_000
            )  # the kernel is connected
            cell.locator(".jp-InputPrompt").click()
            page.keyboard.press("Shift+Enter")  # run the (only) cell

            slider = page.locator(".widget-slider", has=page.locator("label", has_text="left (x)"))
            picture = page.locator(".jp-OutputArea .widget-image")
            label = page.locator(".jp-OutputArea .widget-html", has_text="P(")
            expect(slider).to_be_visible(timeout=180_000)
            expect(picture).to_have_count(1)
            expect(picture).to_have_attribute("src", re.compile("."))
            expect(label).to_contain_text("with the occluder at (y=12, x=12)", timeout=60_000)
            before_src, before_label = picture.get_attribute("src"), label.inner_text()

            slider.locator(".noUi-handle").focus()
            for _ in range(STEPS):
                page.keyboard.press("ArrowRight")

            expect(slider.locator(".widget-readout")).to_have_text(str(12 + STEPS), timeout=30_000)
            expect(label).to_contain_text(f"(y=12, x={12 + STEPS})", timeout=60_000)
            expect(picture).not_to_have_attribute("src", before_src, timeout=30_000)
            assert label.inner_text() != before_label

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            picture.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT))
    finally:
        stop(server)


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_the_voila_app_serves_the_explorers_with_the_shipped_model(tmp_path):
    """`make explore`'s app: Voila serves notebooks/explore.ipynb (the shipped model, no code
    cells); in headless Chromium the occluder's "left (x)" slider moves and the probability
    readout changes. A screenshot goes to build/browser/voila.png."""
    chromium = require_chromium()
    from playwright.sync_api import expect

    port = free_port()
    log_path = tmp_path / "voila.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(REPO / "notebooks" / "explore.ipynb"),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--strip_sources=True",
        ],
        cwd=REPO / "notebooks",
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"Voila exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"Voila did not listen within 90 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        with chromium_page(chromium, 1400, 1000) as page:
            page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)  # Voila runs the notebook first
            slider = page.locator(".widget-slider", has=page.locator("label", has_text="left (x)"))
            label = page.locator(".widget-html", has_text="with the occluder at")
            expect(slider).to_be_visible(timeout=300_000)
            expect(label).to_contain_text("with the occluder at (y=20, x=24)", timeout=60_000)
            assert "load_shipped_model" not in page.content()  # the code cells are not shown
            before = label.inner_text()
            slider.locator(".noUi-handle").focus()
            for _ in range(STEPS):
                page.keyboard.press("ArrowRight")
            expect(label).to_contain_text(f"(y=20, x={24 + STEPS})", timeout=60_000)
            assert label.inner_text() != before
            shot = SCREENSHOT.parent / "voila.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            slider.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
    finally:
        stop(server)
        log.close()


@pytest.fixture(scope="module")
def built_site_and_decks(tmp_path_factory) -> tuple[Path, Path]:
    """The site and the offline decks of two tiny notebooks (one with math), built the way
    `make site` and `make slides` build the course's."""
    import nbformat

    from course_utils.build import CourseEntry, build_site, build_slides, course_notebooks, execute_course

    folder = tmp_path_factory.mktemp("notebooks")
    cells = [
        nbformat.v4.new_markdown_cell("# Deck\n\nThe first slide: $\\Delta = \\|a - b\\|$."),
        nbformat.v4.new_code_cell("print('first')"),
        nbformat.v4.new_code_cell("import ipywidgets\nipywidgets.IntSlider(3)"),  # widgets on a static page
        nbformat.v4.new_markdown_cell("## Second slide\n\nThe second one."),
        nbformat.v4.new_code_cell("print('second')"),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "01_deck.ipynb")
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Other\n\nText.")]), folder / "02_other.ipynb"
    )
    out = tmp_path_factory.mktemp("built")
    notebooks = course_notebooks(folder)
    execute_course(out / "course", notebooks)
    build_slides(out / "slides", out / "course", notebooks[:1])
    course_map = {"01_deck": CourseEntry("Fig. 1", "a deck"), "02_other": CourseEntry("Fig. 2", "another page")}
    index = build_site(out / "site", out / "course", notebooks, course_map=course_map, pictures=False)
    return out / "slides" / "01_deck.slides.html", index.parent


@contextlib.contextmanager
def offline_page(chromium: str) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that may read local files only: every other request is aborted and listed."""
    blocked: list[str] = []

    def block(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with chromium_page(chromium, 1280, 800) as page:
        page.route("**/*", block)
        yield page, blocked


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_an_offline_deck_turns_to_the_next_slide_and_renders_math(built_site_and_decks):
    chromium = require_chromium()
    deck, _ = built_site_and_decks
    with offline_page(chromium) as (page, blocked):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        missing: list[str] = []  # local files the deck asks for that are not beside it
        page.on("requestfailed", lambda request: request.url.startswith("file://") and missing.append(request.url))
        page.goto(deck.as_uri())
        page.wait_for_function("() => window.Reveal && Reveal.isReady && Reveal.isReady()")
        page.wait_for_selector(".MathJax_CHTML, .mjx-chtml")  # MathJax, from _vendor/, typeset the formula
        assert page.evaluate("Reveal.getIndices().h") == 0
        for _ in range(3):  # the first presses reveal the code cells (fragments), the last turns the slide
            page.keyboard.press("ArrowRight")
        page.wait_for_function("() => Reveal.getIndices().h === 1")
        assert "second slide" in page.locator("section.present").first.inner_text().lower()  # the theme capitalizes
        page.wait_for_timeout(1000)  # the slide transition
        shot = SCREENSHOT.parent / "slide.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
    assert not blocked, f"the deck asked the network for {blocked}"
    assert not errors, f"script errors in the deck: {errors}"
    assert not missing, f"the deck asked for files that were not copied beside it: {missing}"


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_the_offline_site_follows_a_chapter_link_and_searches(built_site_and_decks):
    chromium = require_chromium()
    _, html_dir = built_site_and_decks
    with offline_page(chromium) as (page, blocked):
        page.goto((html_dir / "index.html").as_uri())
        page.wait_for_url("**/intro.html")
        page.locator("main a.reference", has_text="01_deck.ipynb").first.click()  # the course map's link
        page.wait_for_url("**/notebooks/01_deck.html")
        assert "first" in page.locator("main").inner_text()  # the executed output
        page.locator("nav a", has_text="Other").first.click()  # the chapter navigation
        page.wait_for_url("**/notebooks/02_other.html")
        page.go_back()
        page.wait_for_selector(".MathJax_CHTML, .mjx-chtml, .MathJax")
        page.goto((html_dir / "search.html").as_uri() + "?q=second")
        page.locator("#search-results a", has_text="Deck").first.wait_for()
        shot = SCREENSHOT.parent / "site.png"
        page.screenshot(path=str(shot))
    assert not blocked, f"the site asked the network for {blocked}"


@pytest.mark.browser
@pytest.mark.timeout(420)
def test_rise_shows_a_notebook_as_live_slides_in_jupyterlab(tmp_path):
    """`make lab`'s live slides: JupyterLab's RISE extension opens a notebook (with the slide types
    the course's notebooks carry) as a reveal.js deck; the right arrow turns to the next slide."""
    chromium = require_chromium()
    import nbformat

    from course_utils.build import assign_slide_types

    cells = [
        nbformat.v4.new_markdown_cell("# Live deck\n\nThe first slide."),
        nbformat.v4.new_markdown_cell("## Next slide\n\nThe second one."),
    ]
    notebook = assign_slide_types(nbformat.v4.new_notebook(cells=cells))
    notebook.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(notebook, tmp_path / "deck.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    server = start_jupyterlab(tmp_path, port, token)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(server, f"{base_url}/api/status?token={token}", tmp_path / "jupyterlab.log", 90)
        with chromium_page(chromium, 1280, 800) as page:
            page.goto(f"{base_url}/rise/deck.ipynb?token={token}", timeout=120_000)
            page.locator(".reveal .slides section.present", has_text="Live deck").first.wait_for(timeout=180_000)
            page.locator(".reveal").first.click()
            page.keyboard.press("ArrowRight")
            page.locator(".reveal .slides section.present", has_text="Next slide").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SCREENSHOT.parent / "rise.png"))
    finally:
        stop(server)
