"""NaN, infinity and other absurd numbers are refused by the library, for every number a user controls,
with a message that names the input; nothing is changed by a refused call."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from chunky.config import InversionConfig
from chunky.directions import ganspace_directions, load_direction_file
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.export import export_session
from chunky.session import Session

BAD = [math.nan, math.inf, -math.inf]
FLOATS = [f.name for f in dataclasses.fields(InversionConfig) if f.type in ("float", float)]


@pytest.fixture(scope="module")
def session():
    editor = ChunkyEditor.tiny()
    s = Session.start(editor, editor.random_face(2), skip_alignment=True)
    s.invert(InversionConfig(steps=2, perceptual="none", resolution=32))
    return s


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", BAD)
def test_config_refuses_non_finite_floats(name, value):
    with pytest.raises(InvalidInputError, match=f"InversionConfig.{name} must be"):
        InversionConfig(**{name: value})


def test_every_float_field_of_the_config_is_checked():
    assert {"lr", "reg_weight", "pixel_weight", "min_delta"} <= set(FLOATS)


@pytest.mark.parametrize("value", BAD)
def test_strengths_must_be_finite(session, value):
    state = session.state
    name = session.editor.directions()[0].name
    with pytest.raises(InvalidInputError, match=f"strength of '{name}' is .*finite"):
        session.set_edit({name: value})
    with pytest.raises(InvalidInputError, match="finite"):
        session.preview({name: value})
    assert session.state is state


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.freeze(["skin"], steps=math.nan), "re-projection steps must be a whole number"),
        (lambda s: s.tune(["hair"], steps=math.inf), "fine-tuning steps must be a whole number"),
        (lambda s: s.tune(["hair"], steps=None), "fine-tuning steps must be a whole number"),
        (lambda s: s.variations("hair", seed=2**80), "seed must be a whole number"),
        (lambda s: s.variations("hair", seed=-1), "seed must be a whole number"),
        (lambda s: s.editor.random_face(math.nan), "seed must be a whole number"),
        (lambda s: export_session(s, "/tmp/unused", tile=math.nan), "grid tile size must be a whole number"),
        (lambda s: s.merge([None, "skin"]), "no segment named None"),
    ],
)
def test_absurd_numbers_and_choices_get_a_clear_message(session, call, message):
    session.set_edit({session.editor.directions()[0].name: 1.0})
    state = session.state
    with pytest.raises(InvalidInputError, match=message):
        call(session)
    assert session.state is state


def test_direction_files_with_nan_are_refused(tmp_path, tiny_generator):
    vector = np.ones(tiny_generator.style_dim, np.float32)
    vector[3] = np.nan
    np.save(tmp_path / "broken.npy", vector)
    with pytest.raises(InvalidInputError, match="broken.npy holds NaN or infinite values"):
        load_direction_file(tmp_path / "broken.npy", tiny_generator)
    pca = {
        "comp": torch.ones(3, 1, tiny_generator.style_dim),
        "std": torch.tensor([1.0, math.inf, 1.0]),
        "mean": torch.zeros(1, tiny_generator.style_dim),
    }
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        ganspace_directions(pca, tiny_generator, {"x": (0, 0, 1, 1.0)})
