"""A real browser (system Chromium driven by Playwright) using the app with the bundled small face model: one
visitor's whole journey at a desktop and a phone size (an example, sketching, invert, edits of every kind, freeze,
variations, a transfer, export, undo, a reload mid-job), and placing a face by hand with five clicks. Screenshots
of what the visitor sees at each stage are saved in tests/output/browser/."""

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
    return np.asarray(Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB"))


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


def choose(page, selector, value: str):
    """Pick ``value`` in a dropdown by typing it and pressing Enter, until the dropdown shows it (under load an
    Enter can land before the typed filter has narrowed the list, and choose the first option)."""
    box = page.locator(f"{selector} input")
    box.wait_for()

    def holds():
        box.fill(value)
        box.press("Enter")
        time.sleep(0.5)
        return box.input_value() == value

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
    # the upload loads at once (detect, align, parse): let it finish, or its status line, written last under
    # load, replaces the placing hints (CI once timed out here waiting for the first hint)
    wait_until(lambda: "face(s) found" in status(page) or "No face" in status(page), what="the upload's load")
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


@pytest.mark.parametrize("width, height", [(1440, 900), (390, 844)])
def test_the_whole_journey_at_desktop_and_phone_sizes(page_and_editor, tmp_path, width, height):
    """At 1440x900 and 390x844, one visitor's whole journey: an example photo, three sketch corrections (one stroke
    undone), invert, a slider, a target, a typed value, freeze, variations, a transfer, captions, undo, a reload
    mid-job. Whenever a control is used, the result, the status, Undo and Cancel are in view and uncovered; every
    stroke is taken and the canvas redrawn; the exported edited.png equals the picture shown after every kind of
    input; the grid's titles stay inside their columns; after the reload the work is restored and the next job
    starts at once."""
    _, editor, demo = page_and_editor
    page = page_and_editor[0].context.browser.new_page(viewport={"width": width, "height": height})
    dialogs = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.type) or dialog.accept())
    walk = Walk(page, tmp_path, f"{width}x{height}")
    try:
        page.goto(demo.local_url, wait_until="load")
        page.wait_for_selector("#examples img", timeout=60_000)
        walk.use("#examples .thumbnail-item >> nth=1")  # a generated face (the astronaut is tested in test_app)
        wait_until(lambda: "Face #1" in status(page), what="the example to load")
        walk.shot("1-example")
        session = next(s for s in reversed(sessions_of(demo)) if s.aligned.skipped)
        walk.sketch_corrections(session)
        walk.use("text=Advanced")
        set_number(page, "#steps", "20")
        walk.use("#invert")
        wait_until(lambda: "Done:" in status(page), what="the inversion")
        walk.export_matches_the_screen("inverted")
        box = walk.use("#slider-0 input[type=range]", click=False)
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
        wait_until(lambda: "Edited" in status(page), what="the slider edit")
        walk.export_matches_the_screen("slider")
        before = image_at(page, "#result img")
        walk.use("#targets label >> nth=0")
        wait_until(lambda: not np.array_equal(image_at(page, "#result img"), before), what="the targets to re-render")
        walk.export_matches_the_screen("target")
        before = image_at(page, "#result img")
        walk.use("#slider-1 input[type=number]", click=False)
        page.locator("#slider-1 input[type=number]").fill("2.5")
        page.locator("#slider-1 input[type=number]").press("Enter")
        wait_until(lambda: not np.array_equal(image_at(page, "#result img"), before), what="the typed value")
        walk.export_matches_the_screen("typed")
        walk.use("#freeze")
        wait_until(lambda: "Frozen" in status(page), what="the freeze")
        walk.export_matches_the_screen("frozen")
        walk.use("text=Variations of one segment")
        walk.use("#variations")
        wait_until(lambda: "click one to use it" in status(page), what="the variations")
        walk.use("#offers .thumbnail-item >> nth=1")
        wait_until(lambda: "Variation adopted" in status(page), what="a variation")
        walk.export_matches_the_screen("variation")
        reference = tmp_path / "reference.png"
        Image.fromarray(editor.random_face(11)).save(reference)
        walk.use("text=Take a segment from a reference photo")
        page.set_input_files("#reference input[type=file]", str(reference))
        walk.use("#reference-aligned input")
        walk.use("#transfer")
        wait_until(lambda: "Took the" in status(page), what="the transfer")
        walk.export_matches_the_screen("transfer")
        walk.grid_titles_stay_in_their_columns()
        walk.use("#undo")
        wait_until(lambda: "Undid" in status(page), what="undo")
        walk.reload_mid_job(dialogs)
    except BaseException:
        walk.shot("failed")  # what the page showed when a step went wrong
        raise
    finally:
        page.close()


class Walk:
    """One visitor's page: every control is used through `use`, which checks what must stay in view."""

    def __init__(self, page, folder, size: str):
        self.page, self.folder, self.size = page, folder, size
        self.exports = 0

    def shot(self, name):
        """What the visitor sees now (the viewport, not the whole page)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"journey-{self.size}-{name}.png"))

    def use(self, selector, click=True):
        """Scroll ``selector`` into view as a visitor would, check the result, status, Undo and Cancel are in view
        too, then click it. Returns its box."""
        page = self.page
        control = page.locator(selector).first
        control.scroll_into_view_if_needed()
        time.sleep(0.2)
        height, width = page.viewport_size["height"], page.viewport_size["width"]
        for shown in ("#result", "#status", "#undo", "#cancel"):
            box = page.locator(shown).bounding_box()
            inside = box["y"] >= 0 and box["y"] + box["height"] <= height and 0 <= box["x"] <= width
            assert inside, f"{shown} is out of view ({box}) while {selector} is used at {self.size}"
            for corner_x, corner_y in ((0.05, 0.1), (0.95, 0.1), (0.5, 0.5)):  # and nothing is drawn over it
                x, y = box["x"] + box["width"] * corner_x, box["y"] + box["height"] * corner_y
                on_top = page.evaluate("([x, y, id]) => !!document.elementFromPoint(x, y).closest(id)", [x, y, shown])
                assert on_top, f"{shown} is covered at ({x:.0f}, {y:.0f}) while {selector} is used at {self.size}"
        if click:
            control.click()
        return control.bounding_box()

    def sketch_corrections(self, session):
        """Strokes added to the mouth, removed, added again: each taken, the canvas cleared and redrawn with the new
        boundaries after each; "Undo stroke" drops the last stroke; a small brush; the segment stays chosen."""
        page = self.page
        self.use("text=2 · Segments")
        self.use("#sketch-segment input")
        choose(page, "#sketch-segment", "mouth")
        page.locator("#sketch canvas.sketch-ink").wait_for(timeout=60_000)
        assert page.locator("#sketch input.sketch-brush").input_value() == "2"  # default: 3% of the 64 px face
        page.locator("#sketch input.sketch-brush").fill("3")  # the visitor's brush size, kept across redraws
        mouth = session.names.index("mouth")
        shares = [float(session.state.segmentation.area()[mouth])]
        for round_, button in enumerate(("add", "remove", "add")):
            picture = page.get_attribute("#sketch img.sketch-picture", "src")
            self.stroke(0.40 + 0.02 * round_, 0.62 - 0.02 * round_, 0.78)
            if round_ == 0:  # a stroke on the forehead, undone: it must not reach the mouth
                self.stroke(0.3, 0.7, 0.2)
                self.use("#sketch button.sketch-undo")
            self.use(f"#{button}")
            wait_until(lambda button=button: f"Segments: {button} done" in status(page), what=f"the {button}")
            wait_until(
                lambda picture=picture: page.get_attribute("#sketch img.sketch-picture", "src") != picture,
                timeout=30,
                what="the canvas redrawn with the new boundaries",
            )
            assert self.painted_pixels() == 0, "the strokes were not cleared after the change"
            shares.append(float(session.state.segmentation.area()[mouth]))
            assert page.locator("#sketch-segment input").input_value() == "mouth"  # the chosen segment is kept
            assert page.locator("#sketch input.sketch-brush").input_value() == "3"
            self.shot(f"2-sketched-{round_}-{button}")
        mask = session.state.segmentation.masks[mouth, 0].cpu().numpy()
        assert mask[: mask.shape[0] * 2 // 5].sum() == 0, "the undone stroke reached the mouth"
        assert shares[1] > shares[0] and shares[2] < shares[1] and shares[3] > shares[2], shares  # every stroke taken
        assert shares[1] - shares[0] < 0.05, shares  # a small brush: a stroke, not a blob

    def stroke(self, start: float, end: float, height: float):
        """One horizontal brush stroke on the sketch canvas, from ``start`` to ``end`` of its width at ``height``."""
        page = self.page
        canvas = page.locator("#sketch canvas.sketch-ink")
        canvas.evaluate("element => element.scrollIntoView({block: 'end'})")  # below a phone's sticky strip
        time.sleep(0.3)
        box = canvas.bounding_box()
        x, y = box["x"] + box["width"] * start, box["y"] + box["height"] * height
        on_top = page.evaluate("([x, y]) => document.elementFromPoint(x, y).matches('canvas.sketch-ink')", [x, y])
        assert on_top, "the stroke's start is hidden under another element"
        painted = self.painted_pixels()
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * end, y, steps=10)
        page.mouse.up()
        assert self.painted_pixels() > painted, "the stroke did not show on the canvas"

    def painted_pixels(self) -> int:
        """How many pixels of the sketch canvas are painted."""
        script = """canvas => {
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let count = 0;
            for (let i = 3; i < data.length; i += 4) count += data[i] > 127;
            return count;
        }"""
        return self.page.locator("#sketch canvas.sketch-ink").evaluate(script)

    def export(self, captions=False) -> dict:
        """Export (with ``captions`` or not); returns the downloaded files, name -> path."""
        page = self.page
        if page.locator("#captions input").is_checked() != captions:
            self.use("#captions input")
        charged = app_actions.EXPORT_QUOTA.used("127.0.0.1")  # grows with every export (files of equal content
        self.use("#export")  # keep their address, so the links need not change)
        wait_until(lambda: app_actions.EXPORT_QUOTA.used("127.0.0.1") > charged or "⚠" in status(page), what="export")
        wait_until(lambda: "Exported" in status(page) or "⚠" in status(page), what="the export's status")
        assert "⚠" not in status(page), status(page)
        time.sleep(0.5)  # the links arrive with the status
        self.exports += 1
        files = {}
        for name in ("edited.png", "comparison.png"):
            with page.expect_download() as download:
                page.locator(f"#downloads a[download='{name}']").click()
            files[name] = self.folder / f"{self.exports}-{name}"
            download.value.save_as(files[name])
        return files

    def export_matches_the_screen(self, after: str):
        shown = image_at(self.page, "#result img")
        exported = np.asarray(Image.open(self.export()["edited.png"]).convert("RGB"))
        assert np.array_equal(exported, shown), f"edited.png differs from the screen after the {after} step"
        self.shot(f"3-{after}")

    def grid_titles_stay_in_their_columns(self):
        """The captioned grid: every column has a title, and no title reaches into the gap between two columns."""
        set_number(self.page, "#tile", "256")
        grid = np.asarray(Image.open(self.export(captions=True)["comparison.png"]).convert("L"))
        cell, gap = 256, 8
        columns = (grid.shape[1] - gap) // (cell + gap)
        header = grid.shape[0] - cell - 2 * gap
        assert columns >= 3 and header > 0  # the photo, the first inversion, what is shown now
        for c in range(columns):
            left = gap + c * (cell + gap)
            assert (grid[:header, left : left + cell] < 128).any(), f"column {c} has no title"
            assert (grid[:header, left - gap : left] > 250).all(), f"a title runs into the gap before column {c}"
        self.shot("4-captioned-grid")

    def reload_mid_job(self, dialogs):
        """A long job, a reload 2 s in: the page asks first, the job stops, the work comes back, and the next job
        starts without waiting."""
        page = self.page
        self.use("text=Best")
        set_number(page, "#steps", "5000")
        self.use("#invert")
        wait_until(lambda: app_actions.JOBS.running() == 1, timeout=30, what="the long job to start")
        time.sleep(2)
        assert app_actions.JOBS.running() == 1, "the job ended before the reload: the test would prove nothing"
        page.reload(wait_until="load")
        assert "beforeunload" in dialogs  # leaving a page with a result asks first
        wait_until(lambda: app_actions.JOBS.running() == 0, timeout=5, what="the old job to be cancelled")
        wait_until(lambda: "Restored your work" in status(page), timeout=30, what="the work to be restored")
        page.wait_for_selector("#result img", timeout=30_000)
        self.shot("5-restored")
        self.use("text=Preview")
        self.use("text=Advanced")
        set_number(page, "#steps", "10")
        self.use("#invert")
        seen = []
        wait_until(lambda: seen.append("ahead" in page.inner_text("body")) or "Done:" in status(page), what="a job")
        assert not any(seen), "the new job waited behind the reloaded tab's job"
