"""A real browser (system Chromium driven by Playwright) using the app with the bundled small face model, start to
finish: load -> invert -> edit -> freeze -> type a slider value and press Enter -> tick a target -> Export -> undo
(the exported grid's photo column must be the aligned crop and its edited column what the page shows); sketching
twice; placing the face by hand. Screenshots of each stage are saved in tests/output/browser/."""

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
import app_actions
from chunky.editor import ChunkyEditor

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parent / "output" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TILE = 64  # the small model's work size: grid cells are then the images themselves, pixel for pixel

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs the system Chromium (apt-get install chromium); .ci/run installs it"
)


@pytest.fixture(scope="module")
def page_and_editor():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    editor = ChunkyEditor.small()
    demo = app.build_demo(editor)
    demo.queue().launch(  # as main() does: uploads go through the visitor's upload quota
        prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, app_kwargs=app.upload_quota_middleware()
    )
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        page.on("dialog", lambda dialog: dialog.accept())  # "leave the page?" before a reload: leave
        page.goto(demo.local_url, wait_until="load")
        page.wait_for_selector("#upload input[type=file]", state="attached", timeout=60_000)
        yield page, editor, demo
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


def image_at(page, selector) -> np.ndarray:
    """The pixels an <img> on the page shows, fetched from its source."""
    source = page.get_attribute(selector, "src")
    data = page.request.get(source).body() if not source.startswith("data:") else None
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def set_number(page, selector, value: str):
    """Type into a number box until the page holds the value (a start-up update can swallow the first try)."""
    box = page.locator(f"{selector} input[type=number]")
    box.wait_for()

    def holds():
        if page.locator(f"{selector} input[type=range]").input_value() == value:
            return True
        box.fill(value)
        box.press("Tab")
        time.sleep(0.5)
        return page.locator(f"{selector} input[type=range]").input_value() == value

    wait_until(holds, timeout=40, what=f"{selector} = {value}")


def status(page) -> str:
    return page.inner_text("#status")


def invert_watching(page, steps: int, text: str) -> list[bool]:
    """Invert with ``steps`` steps per segment; returns, for each look at the page until "Done:", whether
    ``text`` was on it (a progress message, a place in line)."""
    page.click("text=Advanced")
    set_number(page, "#steps", str(steps))
    page.click("#invert")
    seen = []
    wait_until(lambda: seen.append(text in page.inner_text("body")) or "Done:" in status(page), what="the inversion")
    return seen


def test_load_invert_edit_freeze_export_undo_in_a_browser(page_and_editor, tmp_path):
    page, editor, _ = page_and_editor
    photo = tmp_path / "face.png"
    Image.fromarray(editor.random_face(5)).save(photo)

    page.set_input_files("#upload input[type=file]", str(photo))
    wait_until(lambda: not status(page).startswith("Start with step 1"), what="the photo to load on upload")
    page.get_by_label("Already an aligned face crop").check()
    page.click("#load")
    wait_until(lambda: "used as an aligned crop" in status(page), what="the photo to load")
    page.wait_for_selector("#overlay img", timeout=60_000)
    shot(page, "1-loaded")
    assert app_actions.UPLOAD_QUOTA.used("127.0.0.1") >= photo.stat().st_size  # the browser's upload was counted

    seen_progress = invert_watching(page, 20, "s left")
    assert any(seen_progress), "the progress bar with the loss and time left was never shown"
    assert "Done:" in status(page) and "steps" in status(page)
    page.wait_for_selector("#result img")
    shot(page, "2-inverted")
    crop = image_at(page, "#photo img")
    assert np.array_equal(crop, editor.random_face(5))

    inverted = page.get_attribute("#result img", "src")
    box = page.locator("#slider-0 input[type=range]").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    wait_until(lambda: "Edited" in status(page), what="the edit")
    shot(page, "3-edited")

    page.click("#freeze")
    wait_until(lambda: "Frozen" in status(page), what="the freeze")
    assert page.locator("#slider-0 input[type=number]").input_value() == "0"
    assert np.array_equal(image_at(page, "#photo img"), crop)  # the photo panel still shows the photo
    shot(page, "4-frozen")

    frozen = page.get_attribute("#result img", "src")
    typed = page.locator("#slider-1 input[type=number]")
    typed.fill("2.5")
    typed.press("Enter")  # Enter commits a typed value: rendered at full size, the status says so
    wait_until(lambda: "Edited" in status(page) and page.get_attribute("#result img", "src") != frozen, what="Enter")
    committed = image_at(page, "#result img")
    assert committed.shape == crop.shape  # the full render, not the live preview
    page.locator("#targets label").first.click()  # a target ticked: the picture follows at once
    wait_until(lambda: not np.array_equal(image_at(page, "#result img"), committed), what="the targets to re-render")
    set_number(page, "#tile", str(TILE))
    page.click("#export")
    wait_until(lambda: "Exported" in status(page), what="the export")
    link = page.locator("#downloads a[download='comparison.png']")
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "comparison.png"
    download.value.save_as(saved)
    grid = np.asarray(Image.open(saved).convert("RGB"))
    shown = image_at(page, "#result img")
    gap = 8
    header = grid.shape[0] - TILE - 2 * gap  # one row without captions: the titles' header, the cells, the gaps
    cell = lambda column: grid[header : header + TILE, gap + column * (TILE + gap) : gap + column * (TILE + gap) + TILE]  # noqa: E731
    columns = (grid.shape[1] - gap) // (TILE + gap)
    assert np.array_equal(cell(0), crop), "the grid's photo column is not the aligned photo"
    assert np.array_equal(cell(columns - 1), shown), "the grid's edited column is not what the page shows"
    assert page.locator("#slider-1 input[type=number]").input_value() == "2.5"
    shot(page, "5-exported")

    page.click("#undo")
    wait_until(lambda: "Undid" in status(page), what="undo")
    assert page.get_attribute("#result img", "src") != inverted
    shot(page, "6-undone")


def test_place_the_face_by_hand_with_five_clicks_in_a_browser(page_and_editor, tmp_path):
    """A photo whose face the visitor places: the photo is shown, five clicks on it become five points in
    photo pixels (the next one named each time), and "Align to these points" loads the face they describe."""
    page, editor, _ = page_and_editor
    page.reload(wait_until="load")
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=60_000)
    canvas = np.full((1536, 2048, 3), 90, np.uint8)
    canvas[400:1200, 700:1500] = np.asarray(Image.fromarray(editor.random_face(7)).resize((800, 800)))
    photo = tmp_path / "wide.png"
    Image.fromarray(canvas).save(photo)
    page.set_input_files("#upload input[type=file]", str(photo))
    page.click("text=…or place the face by hand")
    page.click("#show-photo")
    page.wait_for_selector("#placing img", timeout=60_000)
    wait_until(lambda: "Point 1 of 5" in status(page) or "detector's points" in status(page), what="the first hint")
    page.click("#clear-points")  # place all five by hand (the detector's proposal is tested in test_input_paths)
    wait_until(lambda: "Point 1 of 5" in status(page), what="the first hint after Clear")
    wanted = np.array([[960, 700], [1240, 700], [1100, 860], [990, 1000], [1210, 1000]])  # photo pixels
    points = page.locator("#points textarea")
    for k, (x, y) in enumerate(wanted):
        box = page.locator("#placing img").bounding_box()
        page.mouse.click(box["x"] + x / 2048 * box["width"], box["y"] + y / 1536 * box["height"])
        commas = 2 * k + 1
        wait_until(lambda commas=commas: points.input_value().count(",") == commas, what=f"point {k + 1}")
    shot(page, "7-points-placed")
    placed = np.array([float(v) for v in points.input_value().split(",")]).reshape(5, 2)
    screen_pixel = 2048 / page.locator("#placing img").bounding_box()["width"]  # photo pixels per screen pixel
    assert np.abs(placed - wanted).max() <= screen_pixel + 1, (placed, screen_pixel)  # within a screen pixel
    assert "Five points placed" in status(page)
    box = page.locator("#placing img").bounding_box()
    page.mouse.click(box["x"] + 1110 / 2048 * box["width"], box["y"] + 870 / 1536 * box["height"])  # near the nose
    wait_until(lambda: "Moved the nose tip" in status(page), what="the nose tip to move")
    placed = np.array([float(v) for v in points.input_value().split(",")]).reshape(5, 2)
    assert (
        np.abs(placed[2] - (1110, 870)).max() <= screen_pixel + 1
        and np.abs(placed[[0, 1, 3, 4]] - wanted[[0, 1, 3, 4]]).max() <= screen_pixel + 1
    )
    page.click("#place")
    wait_until(lambda: "placed by hand" in status(page), what="the alignment to the placed points")
    page.wait_for_selector("#crop img", timeout=60_000)
    shot(page, "8-aligned-by-hand")


def sessions_of(demo) -> list:
    """The sessions the server holds (one per browser tab or API client)."""
    from chunky.session import Session

    states = list(demo.server_app.state_holder.session_data.values())
    return [value for state in states for value in list(state.state_data.values()) if isinstance(value, Session)]


def test_sketch_twice_in_a_browser(page_and_editor):
    """Paint a short stroke and add it to the mouth, then paint another and remove it: the canvas takes the second
    stroke (it used to stay "processing" after the first), the brush is small (one stroke moves the mouth by
    at most a few percent of the crop), the chosen segment stays chosen, and the canvas shows the boundaries."""
    page, editor, demo = page_and_editor
    page.reload(wait_until="load")
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=60_000)
    page.locator("#seed input").fill("3")
    page.locator("#seed input").press("Tab")
    page.click("#random")
    wait_until(lambda: "Random face #3" in status(page), what="the random face")
    face = editor.random_face(3, resolution=editor.work_size())
    session = next(s for s in reversed(sessions_of(demo)) if np.array_equal(s.aligned.crop, face))  # this tab's
    page.click("text=2 · Segments")
    chooser = page.locator("#sketch-segment input")
    chooser.click()
    chooser.fill("mouth")
    chooser.press("Enter")
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for(timeout=60_000)
    shares = [float(session.state.segmentation.area()[session.names.index("mouth")])]
    for button, (start, end) in (("add", (0.40, 0.62)), ("remove", (0.42, 0.58))):
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * start, box["y"] + box["height"] * 0.78)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * end, box["y"] + box["height"] * 0.78, steps=10)
        page.mouse.up()
        page.click(f"#{button}")
        wait_until(
            lambda button=button: f"Segments: {button} done" in status(page) and "canvas is ready" in status(page),
            timeout=60,
            what=f"the {button} and the canvas redrawn",
        )
        time.sleep(1.5)  # the browser applies the redrawn canvas after the status arrives
        shares.append(float(session.state.segmentation.area()[session.names.index("mouth")]))
        assert page.locator("#sketch-segment input").input_value() == "mouth"  # the chosen segment is kept
        shot(page, f"9-sketched-{button}")
    assert shares[1] > shares[0] and shares[2] < shares[1], shares  # the second stroke was taken too
    assert shares[1] - shares[0] < 0.05, shares  # a small brush: a stroke, not a blob


def test_a_reload_mid_job_cancels_it_and_the_next_job_starts_at_once(page_and_editor):
    """Start a long inversion, reload the tab after 2 s: the page asks before leaving, the old job is cancelled
    (the slot is free within seconds), and a new inversion from the new tab starts without waiting."""
    page, editor, demo = page_and_editor
    dialogs = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.type))
    page.reload(wait_until="load")
    page.wait_for_selector("#random", timeout=60_000)
    page.click("#random")
    wait_until(lambda: "Random face #" in status(page), what="a random face")
    page.click("text=Advanced")
    set_number(page, "#steps", "5000")
    page.get_by_label("Best").check()
    page.click("#invert")
    wait_until(lambda: app_actions.JOBS.running() == 1, timeout=30, what="the long job to start")
    time.sleep(2)
    assert app_actions.JOBS.running() == 1, "the job ended before the reload: the test would prove nothing"
    page.reload(wait_until="load")
    started = time.monotonic()
    wait_until(lambda: app_actions.JOBS.running() == 0, timeout=30, what="the old job to be cancelled")
    freed = time.monotonic() - started
    wait_until(lambda: "Restored your work" in status(page), timeout=30, what="the work to be restored")
    page.wait_for_selector("#result img", timeout=30_000)  # the stopped job's best so far, restored
    shot(page, "11-restored-after-reload")
    page.click("#random")
    wait_until(lambda: "Random face #" in status(page), what="a random face in the new tab")
    waited = invert_watching(page, 10, "ahead")
    assert not any(waited), "the new job waited behind the reloaded tab's job"
    print(f"slot freed {freed:.1f} s after the reload")
    assert freed < 5  # uncancelled, the job ran on for 17 s here
    page.wait_for_selector("#result img", timeout=60_000)
    page.reload(wait_until="load")  # with a result on the page, leaving asks first
    assert "beforeunload" in dialogs


@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_the_result_and_status_stay_in_view_beside_every_control(page_and_editor, width, height):
    """On a desktop and on a phone: whichever control is scrolled into view to be used, the result, the status
    line, Undo and Cancel are inside the viewport too."""
    page, _, demo = page_and_editor
    viewer = page.context.browser.new_page(viewport={"width": width, "height": height})
    try:
        viewer.goto(demo.local_url, wait_until="load")
        viewer.wait_for_selector("#random", timeout=60_000)
        viewer.click("#random")
        wait_until(lambda: "Random face #" in status(viewer), what="a random face")
        viewer.click("#invert")
        wait_until(lambda: "Done:" in status(viewer), what="the inversion")
        for control in ("#load", "#invert", "#targets", "#slider-0", "#freeze", "#export", "#downloads"):
            viewer.locator(control).scroll_into_view_if_needed()
            time.sleep(0.2)
            for shown in ("#result", "#status", "#undo", "#cancel"):
                box = viewer.locator(shown).bounding_box()
                inside = box["y"] >= 0 and box["y"] + box["height"] <= height and 0 <= box["x"] <= width
                assert inside, f"{shown} is out of view ({box}) while {control} is used at {width}x{height}"
        shot(viewer, f"10-in-view-{width}x{height}")
    finally:
        viewer.close()
