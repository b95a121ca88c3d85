"""The README's Python API example runs, on the tiny model, as written (only the model, the photo and the
direction names it uses are swapped for the test model's)."""

import re
from pathlib import Path

import numpy as np
from PIL import Image

from chunky.editor import ChunkyEditor

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs_on_the_tiny_model(tmp_path, monkeypatch):
    editor = ChunkyEditor.tiny()
    photo = tmp_path / "me.jpg"
    Image.fromarray(editor.random_face(4)).save(photo, quality=95)
    first, second = (d.name for d in editor.directions()[:2])
    code = readme_example()
    swaps = {"ChunkyEditor.from_pretrained()": "ChunkyEditor.tiny()", '"me.jpg"': repr(str(photo)),
             '"smile"': repr(first), '"age"': repr(second), '"out/"': repr(str(tmp_path / "out")),
             "steps=100": "steps=5"}
    for old, new in swaps.items():
        assert old in code or old == '"age"', f"the README example no longer contains {old}"
        code = code.replace(old, new)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    session = namespace["session"]
    assert "eyes+brows" in session.names and session.state.action == "merge"  # the tune was undone
    assert (tmp_path / "out" / "work.pt").is_file()
    shown = np.asarray(Image.open(tmp_path / "out" / "edited.png"))
    assert np.array_equal(shown, session.display())
