"""The hostile-image corpus (tests/test_fuzz.py) through every other way an image enters the app: the webcam,
the sketch layers and the reference photo of a region transfer. Each file is refused with a clear message
(never the generic one) that changes nothing, or used safely."""

import gradio as gr
import pytest

import app
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.images import read_image
from tests.test_fuzz import bad_inputs

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
        if check(page.change_segments(session, "add", {"layers": [str(path)]}, [], "skin"), name, "add done"):
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
    reader_refuses = 0
    for name, data in bad_inputs():
        try:
            read_image(data, name=name)
        except InvalidInputError:
            reader_refuses += 1
    assert reader_refuses > 100 and all(count == reader_refuses for count in refused.values()), (
        reader_refuses,
        refused,
    )
