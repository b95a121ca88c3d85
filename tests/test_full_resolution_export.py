"""The full-resolution export: the final codes rendered again at the face's size (up to the generator's), for the
paste-back and the grid; the shown edited.png stays what the page shows."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.export import export_session, full_size, render_at
from chunky.generator import random_generator
from chunky.images import resize_uint8, tensor_to_uint8, uint8_to_tensor
from chunky.session import Session

FAST = InversionConfig(steps=3, perceptual="none", resolution=16)


@pytest.fixture(scope="module")
def session():
    """A 32 px generator worked at 16 px; a 64 px photo used as its aligned crop; inverted, then edited."""
    editor = ChunkyEditor(
        random_generator(32, 32, 2, seed=3),
        device="cpu",
        pretrained_perceptual=False,
        face_models=False,
        label="test",
        work_size=16,
    )
    photo = np.repeat(np.repeat(editor.random_face(4), 2, axis=0), 2, axis=1)
    s = Session.start(editor, photo, skip_alignment=True)
    s.invert(FAST)
    name = editor.directions()[0].name
    s.set_edit({name: 2.0}, ["skin"])
    return s


def test_the_full_size_is_the_faces_size_in_the_photo_up_to_the_generators(session):
    assert session.size == 16 and full_size(session) == 32  # a 64 px face, a 32 px generator


def test_rendered_at_the_work_size_it_is_what_the_page_shows(session):
    assert np.abs(render_at(session, 16).astype(int) - session.display().astype(int)).max() <= 1


def test_rendered_larger_it_is_the_shown_picture_with_detail_and_kept_parts_are_the_photo(session):
    big = render_at(session, 32)
    assert big.shape == (32, 32, 3)
    shrunk = tensor_to_uint8(torch.nn.functional.interpolate(uint8_to_tensor(big), size=(16, 16), mode="area"))
    shown = session.display().astype(int)
    error = np.abs(shrunk.astype(int) - shown).mean()
    assert error < 0.1 * np.abs(shown - shown.mean((0, 1))).mean(), error  # the same picture at 16 px
    naive = torch.nn.functional.interpolate(uint8_to_tensor(session.display()), size=(32, 32), mode="bilinear")
    assert np.abs(big.astype(int) - tensor_to_uint8(naive).astype(int)).mean() > 2  # with detail, not scaled up
    result = session.state.result
    kept = result.masks[result.keep].sum(0)[None]  # [1, 1, 16, 16]
    up = torch.nn.functional.interpolate(kept, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    crop = resize_uint8(session.aligned.crop, 32)
    inside = (up >= 1 - 1e-6).numpy()
    assert inside.any() and np.array_equal(big[inside], crop[inside])  # the background is the photo's, exactly
    edit = session.state.edit
    session.state = dataclasses.replace(session.state, edit=None)
    try:
        unedited = render_at(session, 32)
    finally:
        session.state = dataclasses.replace(session.state, edit=edit)
    assert not np.array_equal(unedited, big)  # the edited codes are rendered, not the inverted ones


def test_the_export_pastes_back_the_full_size_render_and_says_so_in_the_grid(session, tmp_path):
    plain = export_session(session, tmp_path / "plain", tile=64)
    full = export_session(session, tmp_path / "full", tile=64, high_resolution=True)
    assert plain.size == 16 and full.size == 32 and full.render_seconds > 0
    names = [f.name for f in full.files]
    assert "edited_32px.png" in names and "edited_32px.png" not in [f.name for f in plain.files]
    read = lambda folder, name: np.asarray(Image.open(tmp_path / folder / name))  # noqa: E731
    assert np.array_equal(read("full", "edited.png"), session.display())  # the shown picture, unchanged
    assert np.array_equal(read("full", "edited_32px.png"), render_at(session, 32))
    assert not np.array_equal(read("full", "pasted_back.png"), read("plain", "pasted_back.png"))
    assert not np.array_equal(full.grid, plain.grid)


def test_a_face_no_larger_than_the_work_size_is_exported_as_shown(session, tmp_path, monkeypatch):
    """Full resolution asked for a face whose full size is the work size: nothing is rendered again, and no
    second edited file claims otherwise."""
    import chunky.export

    monkeypatch.setattr(chunky.export, "full_size", lambda s: s.size)
    done = export_session(session, tmp_path / "same", tile=64, high_resolution=True)
    assert done.size == session.size and done.render_seconds == 0.0
    assert not [f for f in done.files if f.name.startswith("edited_")]
