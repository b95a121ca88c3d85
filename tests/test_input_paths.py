"""The hostile-image corpus (tests/test_fuzz.py) through every other way an image enters the app: the webcam,
the sketch canvas's strokes and the reference photo of a region transfer. Each file is refused with a clear message
(never the generic one) that changes nothing, or used safely."""

import base64
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from app_sketch import picture_url
from chunky import views
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.images import read_image
from chunky.inputs import MAX_STROKES_SIDE
from tests.test_fuzz import bad_inputs

ROOT = Path(__file__).resolve().parents[1]
AT = {name: i for i, name in enumerate(app.SCREEN_PARTS)}  # handlers' outputs include the session


@pytest.fixture(scope="module")
def page_and_session():
    editor = ChunkyEditor.tiny()
    page = app.Page(editor, editor.directions())
    session = page.random_face(3)[AT["session"]]
    session.invert(InversionConfig(steps=2, perceptual="none", resolution=32))
    return page, session


def status_of(outputs) -> str:
    return outputs[AT["status"]]


def check(outputs, name, used_message):
    status = status_of(outputs)
    assert "Something went wrong" not in status, f"{name}: {status}"
    assert status.startswith("⚠") or used_message in status, f"{name}: {status}"
    return status.startswith("⚠")


def test_the_corpus_through_the_webcam_sketch_and_reference_paths(page_and_session, tmp_path):
    page, session = page_and_session
    sliders = [0.0] * len(page.names)
    refused = {"webcam": 0, "sketch": 0, "reference": 0}
    for k, (name, data) in enumerate(bad_inputs()):
        path = tmp_path / f"case{k}.img"
        path.write_bytes(data)
        if check(page.load_photo(str(path), 0, False), name, "used as an aligned crop"):
            refused["webcam"] += 1
        before = session.state
        strokes = "data:image/png;base64," + base64.b64encode(data).decode()  # as the canvas sends them
        if check(page.change_segments(session, "add", strokes, [], "skin"), name, "add done"):
            refused["sketch"] += 1
            assert session.state is before
        else:
            session.undo()
        before = session.state
        outputs = page.transfer(session, [], str(path), "hair", True, gr.Progress(), *sliders)
        if check(outputs, name, "Took the hair"):
            refused["reference"] += 1
            assert session.state is before
        else:
            session.undo()
    reader_refuses, larger_than_a_canvas = 0, 0
    for name, data in bad_inputs():
        try:
            image = read_image(data, name=name)
            larger_than_a_canvas += max(image.shape[:2]) > MAX_STROKES_SIDE  # the strokes' own, tighter limit
        except InvalidInputError:
            reader_refuses += 1
    expected = {"webcam": reader_refuses, "sketch": reader_refuses + larger_than_a_canvas, "reference": reader_refuses}
    assert reader_refuses > 100 and refused == expected, (reader_refuses, larger_than_a_canvas, refused)


SKETCH_BOMB_SCRIPT = """
import base64, resource, sys, time
from pathlib import Path

import app  # the page's sketch input, as the server checks it
strokes = "data:image/png;base64," + base64.b64encode(Path(sys.argv[1]).read_bytes()).decode()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    app.ui.SKETCH.check(strokes)
    print("decoded")
except Exception as error:
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(type(error).__name__, time.perf_counter() - start, grown)
"""


def test_huge_strokes_are_refused_from_their_header_before_decoding(tmp_path):
    """Strokes sent as a 12000 x 12000 PNG (small, 144 megapixels): refused in under 2 s, peak memory up by under
    100 MB, with the app's own message."""
    import subprocess
    import sys

    from PIL import Image

    path = tmp_path / "layer.png"
    Image.new("1", (12000, 12000)).save(path)
    done = subprocess.run(
        [sys.executable, "-c", SKETCH_BOMB_SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    kind, seconds, grown_kib = done.stdout.split()
    assert kind == "InvalidInputError", done.stdout + done.stderr[-2000:]  # (larger than any canvas)
    assert float(seconds) < 2.0 and int(grown_kib) < 100 * 1024, (seconds, grown_kib)


def test_the_sketch_input_takes_the_canvas_value_and_refuses_anything_else():
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[30:34, 20:40] = (255, 0, 0, 255)
    strokes = picture_url(layer)
    (decoded,) = app.ui.SKETCH.check(strokes)
    assert np.array_equal(decoded, layer)
    assert app.ui.SKETCH.check("") == [] and app.ui.SKETCH.check(None) == []
    odd_values = ("data:image/jpeg;base64,AAAA", "data:image/png;base64,@@@", "data:image/png;base64,é", 5, "x")
    for odd in (*odd_values, {"layers": []}):
        with pytest.raises(InvalidInputError, match="Sketch on the crop"):
            app.ui.SKETCH.check(odd)
    too_long = "data:image/png;base64," + "A" * (12 << 20)  # over 8 MiB once decoded
    with pytest.raises(InvalidInputError, match="over"):
        app.ui.SKETCH.check(too_long)


def test_five_clicks_on_the_shown_photo_place_the_face(page_and_session, tmp_path):
    """The photo is shown at most 1024 px; each click (in shown pixels) becomes a point in photo pixels, the hint
    says which point is next, and "Align to these points" crops the face the points describe."""
    from PIL import Image

    from chunky.align import align_face

    page, _ = page_and_session
    photo = np.zeros((1536, 2048, 3), np.uint8)
    photo[400:1200, 700:1500] = np.asarray(Image.fromarray(page.editor.random_face(7)).resize((800, 800)))
    path = tmp_path / "wide.png"
    Image.fromarray(photo).save(path)
    shown, points, hint = page.show_placing(str(path), "", 0)  # no detector in the test mode: nothing proposed
    assert shown.shape == (768, 1024, 3) and points == "" and "left eye" in hint
    wanted = np.array([[960, 700], [1240, 700], [1100, 860], [990, 1000], [1210, 1000]])  # photo pixels
    for k, (x, y) in enumerate(wanted):
        event = gr.SelectData(None, {"index": [x / 2, y / 2], "value": None})
        shown, points, hint = page.add_point(str(path), points, event)
        assert hint.startswith("Five points") if k == 4 else f"Point {k + 2} of 5" in hint
    assert points == ",".join(str(v) for v in wanted.ravel())
    assert shown[350, 480].tolist() == [255, 0, 0]  # the first dot is drawn where the left eye was clicked
    moved = gr.SelectData(None, {"index": [1120 / 2, 880 / 2], "value": None})  # a sixth click near the nose
    _, points_moved, hint = page.add_point(str(path), points, moved)
    assert "Moved the nose tip" in hint
    assert points_moved == ",".join(str(v) for v in [*wanted.ravel()[:4], 1120, 880, *wanted.ravel()[6:]])
    outputs = page.place(str(path), points)
    session, status = outputs[AT["session"]], outputs[AT["status"]]
    assert "placed by hand" in status
    expected = align_face(photo, None, size=session.aligned.size, landmarks=wanted, template=page.editor.template)
    assert np.allclose(session.aligned.matrix, expected.matrix)
    refused = page.place(str(path), "1,2,3")[AT["status"]]
    assert refused.startswith("⚠") and "five points" in refused


def test_the_detectors_points_are_proposed_and_a_click_moves_the_nearest(tmp_path):
    """With a real detector (dlib, the small model's offline pipeline), showing a photo proposes the five points
    of the chosen face; a click moves the nearest one; a face number the photo does not have is said so; Clear
    starts from none."""
    from PIL import Image

    from chunky.align import detect_faces
    from tests.conftest import shared_file

    editor = ChunkyEditor.small()
    page = app.Page(editor, editor.directions())
    face = np.asarray(Image.open(shared_file("faces/aligned1024/16_01.png")).convert("RGB").resize((600, 600)))
    photo = np.full((900, 1400, 3), 60, np.uint8)
    photo[150:750, 500:1100] = face
    path = tmp_path / "wide.png"
    Image.fromarray(photo).save(path)
    expected = detect_faces(photo, editor.detector())[0].landmarks
    shown, points, hint = page.show_placing(str(path), "", 0)
    assert "The detector's points for face 0 of 1" in hint
    proposed = np.array([float(v) for v in points.split(",")]).reshape(5, 2)
    assert np.abs(proposed - expected).max() <= 0.5 and 650 < proposed[2, 0] < 950  # the nose, inside the face
    nose = proposed[2] + (12, -9)
    click = gr.SelectData(None, {"index": list(nose * views.placing_scale(photo.shape)), "value": None})
    _, moved, hint = page.add_point(str(path), points, click)
    moved = np.array([float(v) for v in moved.split(",")]).reshape(5, 2)
    assert "Moved the nose tip" in hint and np.abs(moved[2] - nose).max() <= 1
    assert np.array_equal(np.delete(moved, 2, axis=0), np.delete(proposed, 2, axis=0))
    _, points, hint = page.show_placing(str(path), "", 1)
    assert points == "" and "1 face(s) found, none numbered 1" in hint
    _, points, hint = page.placing(str(path), "", None)  # Clear: nothing proposed
    assert points == "" and hint.startswith("Point 1 of 5")


def test_the_canvas_update_is_plain_json_for_the_page_and_the_api():
    """The update that redraws the canvas goes through Gradio's update processing into JSON (the /call API uses
    json.dumps): every property is sent as a property, none as an attribute of the component."""
    import json

    from gradio.blocks import postprocess_update_dict

    from app_sketch import show_picture, sketch_canvas

    with gr.Blocks():
        canvas = sketch_canvas("Sketch", 64, "sketch")
    picture = np.zeros((64, 64, 3), np.uint8)
    sent = postprocess_update_dict(canvas, dict(show_picture(picture)))
    assert json.loads(json.dumps(sent))["props"]["picture"] == picture_url(picture)
    assert sent["value"] == ""
