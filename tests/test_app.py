import numpy as np
import pytest
from PIL import Image

import app
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.tiny()


def test_random_face_is_deterministic_per_seed(editor):
    a, b, c = editor.random_face(1), editor.random_face(1), editor.random_face(2)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert editor.random_face(1, resolution=16).shape == (16, 16, 3)
    with pytest.raises(InvalidInputError, match="truncation must be in \\[0, 1\\]"):
        editor.random_face(1, truncation=1.5)


def test_app_serves_random_faces_over_the_api(editor):
    from gradio_client import Client

    demo = app.build_demo(editor)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        path = client.predict(3, 0.7, api_name="/random_face")
        served = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(served, editor.random_face(3, truncation=0.7))
    finally:
        demo.close()


def test_missing_weights_page_explains_instead_of_crashing(monkeypatch):
    monkeypatch.delenv("CHUNKY_MODEL", raising=False)
    editor, error = app.load_editor()  # offline, no weights here
    assert editor is None
    assert "CHUNKY_WEIGHTS_DIR" in error
    demo = app.build_demo(None, startup_error=error)
    texts = [block.value for block in demo.blocks.values() if hasattr(block, "value") and isinstance(block.value, str)]
    assert any("could not be loaded" in t and "CHUNKY_WEIGHTS_DIR" in t for t in texts)
