"""Every handler the page and the HTTP API reach, called with odd values in each argument (what a hand-written
API client can send): each is used or refused with a message that names the input, never the generic
"Something went wrong", and a refusal changes nothing."""

import gradio as gr
import numpy as np
import pytest

import app
from chunky import views
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.export import ONE_CODE_EDIT, grid_columns

AT = {name: i for i, name in enumerate(app.SCREEN_PARTS)}
ODD_VALUES = [None, "x", -1, 10**9, 2.5, float("nan"), [], {"a": 1}]


@pytest.fixture(scope="module")
def page():
    editor = ChunkyEditor.tiny()
    return app.Page(editor, editor.directions())


def fresh_session(page):
    session = page.random_face(3)[AT["session"]]
    session.invert(InversionConfig(steps=1, perceptual="none", resolution=32))
    return session


def valid_calls(page, session, tmp_path):
    """(handler name, bound handler, valid arguments after the session) for every handler that takes inputs."""
    sliders = [0.0] * len(page.names)
    photo = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(page.editor.random_face(5)).save(photo)
    progress = gr.Progress()
    return [
        ("load_photo", page.load_photo, [str(photo), 0, True], False),
        ("random_face", page.random_face, [1], False),
        ("change_segments", page.change_segments, [session, "merge", None, ["eyes", "brows"], "skin"], True),
        ("invert", page.invert, [session, "W+", "preview", 1, 0, 0, "fp32", ["skin"], False, progress], True),
        ("edit", page.edit, [session, ["skin"], *sliders], True),
        ("refine", page.refine, [session, [], *sliders], True),
        ("variations", page.variations, [session, [], "skin", 0, *sliders], True),
        ("tune", page.tune, [session, [], ["skin"], 1, progress, *sliders], True),
        ("transfer", page.transfer, [session, [], str(photo), "hair", True, progress, *sliders], True),
        ("export", page.export, [session, [], 64, False, False, False, None, *sliders], True),
    ]


def test_odd_values_in_every_argument_get_a_clear_answer(page, tmp_path):
    session = fresh_session(page)
    generic = []
    for name, handler, arguments, with_session in valid_calls(page, session, tmp_path):
        first = 1 if with_session else 0
        for position in range(first, len(arguments)):
            if isinstance(arguments[position], gr.Progress):
                continue
            for odd in ODD_VALUES:
                call = list(arguments)
                call[position] = odd
                before = session.state
                status = handler(*call)[AT["status"]]
                if "Something went wrong" in status:
                    generic.append(f"{name} argument {position} = {odd!r}: {status}")
                elif status.startswith("⚠"):
                    assert session.state is before, f"{name} argument {position} = {odd!r} changed the work"
    assert not generic, "\n".join(generic)


def test_choosing_a_variation_by_an_index_that_is_not_a_number_is_refused_clearly(page, tmp_path):
    session = fresh_session(page)
    page.variations(session, [], "skin", 0, *[0.0] * len(page.names))
    for index in ("abc", None, 2.5, -1, 99, [0, 1]):
        event = gr.SelectData(None, {"index": index, "value": None})
        status = page.choose_variation(session, event)[AT["status"]]
        assert status.startswith("⚠") and "Something went wrong" not in status, (index, status)


def test_the_edit_status_gives_the_preservation_figures_and_the_one_code_comparison(page):
    session = page.random_face(4)[AT["session"]]
    sliders = [2.0] + [0.0] * (len(page.names) - 1)
    session.invert(InversionConfig(steps=1, perceptual="none", resolution=32))
    status = page.edit(session, ["mouth"], *sliders)[AT["status"]]
    assert "outside the edit: 0.0% of pixels changed" in status and "one W+ code" not in status
    session.invert(InversionConfig(steps=1, perceptual="none", resolution=32), baselines=True)
    status = page.edit(session, ["mouth"], *sliders)[AT["status"]]
    share = float(status.split("The same edit of one W+ code: ")[1].split("%")[0])
    assert "outside the edit: 0.0% of pixels changed" in status and share > 50, status


def test_the_comparison_shows_the_edit_beside_the_same_edit_of_one_code(page, tmp_path):
    """The baselines gallery and the exported grid show the one-code edit as a picture, captioned with the same
    figure the status line gives, and follow the sliders."""
    session = page.random_face(4)[AT["session"]]
    session.invert(InversionConfig(steps=1, perceptual="none", resolution=32), baselines=True)
    sliders = [2.0] + [0.0] * (len(page.names) - 1)
    shown = page.edit(session, ["mouth"], *sliders)
    status, gallery = shown[AT["status"]], shown[AT["baselines"]]
    share = status.split("The same edit of one W+ code: ")[1].split("%")[0]
    one_code, caption = gallery[-1]
    assert caption.startswith(f"the same edit, one W+ code: {share}%"), (caption, status)
    assert gallery[-2][1].startswith("the edit, per segment: 0.0%")
    assert np.array_equal(gallery[-2][0], session.display())
    assert np.array_equal(one_code, session.global_preservation()[0])
    assert session.global_edit() is one_code  # rendered once per edit
    stronger = page.edit(session, ["mouth"], *([3.0] + sliders[1:]))[AT["baselines"]]
    assert not np.array_equal(stronger[-1][0], one_code)  # a new slider value: a new one-code edit
    exported = page.export(session, ["mouth"], 64, True, True, True, None, *([3.0] + sliders[1:]))
    labels = [label for label, _ in grid_columns(session, captions=True)]
    assert labels[-1].startswith(f"{ONE_CODE_EDIT} (") and "outside the segments" in labels[-1]
    status = exported[AT["status"]]  # the test model's faces are no larger than its 64 px: nothing rendered again
    assert status.startswith("Exported") and "the shown picture is its full size" in status
    grid = exported[-1]  # the 16:9 slide flag: the grid is centred on a 16:9 canvas
    assert abs(grid.shape[1] / grid.shape[0] - 16 / 9) < 0.01
    page.edit(session, ["mouth"], *[0.0] * len(page.names))
    assert len(views.baselines(session)) == len(gallery) - 2  # no edit: no edit pictures
