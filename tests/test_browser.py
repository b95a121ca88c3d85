"""A real browser (system Chromium driven by Playwright) using the app in test mode, start to finish.
Screenshots of each stage are saved in tests/output/browser/."""

import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

import app
from chunky.editor import ChunkyEditor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent / "output" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs the system Chromium (apt-get install chromium); .ci/run installs it")


@pytest.fixture(scope="module")
def page_and_editor():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    editor = ChunkyEditor.tiny()
    demo = app.build_demo(editor)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        page.goto(demo.local_url, wait_until="load")
        page.wait_for_selector("#upload input[type=file]", state="attached", timeout=60_000)
        yield page, editor
        browser.close()
    demo.close()


def wait_until(condition, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_invert_edit_freeze_undo_export_in_a_browser(page_and_editor, tmp_path):
    page, editor = page_and_editor
    photo = tmp_path / "face.png"
    Image.fromarray(editor.random_face(5)).save(photo)

    page.set_input_files("#upload input[type=file]", str(photo))
    page.get_by_label("Already an aligned face crop").check()
    page.click("#load")
    page.wait_for_selector("#crop img", timeout=60_000)
    page.wait_for_selector("#overlay img", timeout=60_000)
    shot(page, "1-loaded")

    page.click("text=Advanced")
    steps = page.locator("#steps input[type=number]")
    steps.wait_for()

    def steps_set_to_20():  # typing can race the page's own start-up updates: type again until it holds
        if page.locator("#steps input[type=range]").input_value() == "20":
            return True
        steps.fill("20")
        steps.press("Tab")
        time.sleep(0.5)
        return page.locator("#steps input[type=range]").input_value() == "20"

    wait_until(steps_set_to_20, timeout=40, what="steps = 20")
    page.click("#invert")
    seen_progress = []
    wait_until(lambda: seen_progress.append("s left" in page.inner_text("body")) or "Done:" in page.inner_text("#status"),
               what="the inversion to finish")
    assert any(seen_progress), "the progress bar with the loss and time left was never shown"
    assert "Done: 20 steps" in page.inner_text("#status")
    page.wait_for_selector("#result img")
    shot(page, "2-inverted")

    inverted = page.get_attribute("#result img", "src")
    box = page.locator("#slider-0 input[type=range]").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    wait_until(lambda: page.get_attribute("#result img", "src") != inverted, what="the edited image")
    edited = page.get_attribute("#result img", "src")
    shot(page, "3-edited")

    page.click("#freeze")
    wait_until(lambda: page.locator("#slider-0 input[type=number]").input_value() == "0", what="sliders reset by freeze")
    shot(page, "4-frozen")
    page.click("#undo")
    wait_until(lambda: page.get_attribute("#result img", "src") not in (edited,), what="undo")
    shot(page, "5-undone")

    page.click("#export")
    link = page.locator("#downloads a[download='pasted_back.png']")
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded.png"
    download.value.save_as(saved)
    assert Image.open(saved).size == Image.open(photo).size
    shot(page, "6-exported")
