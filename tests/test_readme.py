"""The examples run as written: the README's on the small face model and a real photo, docs/api.md's on the
tiny model (only the model, the photo and the direction names it uses are swapped for the test model's); the
README stays a front door (under 200 lines) and links every docs page."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from chunky.editor import ChunkyEditor
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]


def api_example() -> str:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_readme_is_short_and_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    missing = [p for p in pages if f"(docs/{p})" not in text]
    assert not missing, f"docs pages the README does not link: {missing}"
    for page in pages + ["README.md"]:
        for target in re.findall(r"\]\(([^)#:]+\.md)", (ROOT / "docs" / page).read_text()):
            assert (ROOT / "docs" / target).resolve().is_file(), f"docs/{page} links a missing {target}"


def test_the_readme_python_example_runs_on_the_small_model_and_a_real_photo(tmp_path):
    photo = shared_file("faces/aligned1024/16_01.png")
    code = readme_python().replace('"me.jpg"', repr(str(photo))).replace('"out/"', repr(str(tmp_path / "out")))
    code = code.replace('editor.preset("balanced")', 'editor.preset("preview")')  # the same path, fewer steps
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    session = namespace["session"]
    assert session.state.edit is not None and (tmp_path / "out" / "pasted_back.png").is_file()
    shown = np.asarray(Image.open(tmp_path / "out" / "edited.png"))
    assert np.array_equal(shown, session.display())


def test_the_docs_python_api_example_runs_on_the_tiny_model(tmp_path, monkeypatch):
    editor = ChunkyEditor.tiny()
    photo = tmp_path / "me.jpg"
    Image.fromarray(editor.random_face(4)).save(photo, quality=95)
    first, second = (d.name for d in editor.directions()[:2])
    code = api_example()
    swaps = {
        "ChunkyEditor.from_pretrained()": "ChunkyEditor.tiny()",
        '"me.jpg"': repr(str(photo)),
        '"smile"': repr(first),
        '"age"': repr(second),
        '"out/"': repr(str(tmp_path / "out")),
        "steps=100": "steps=5",
    }
    for old, new in swaps.items():
        assert old in code or old == '"age"', f"the docs/api.md example no longer contains {old}"
        code = code.replace(old, new)
    namespace = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    session = namespace["session"]
    assert "eyes+brows" in session.names and session.state.action == "merge"  # the tune was undone
    assert (tmp_path / "out" / "work.pt").is_file()
    shown = np.asarray(Image.open(tmp_path / "out" / "edited.png"))
    assert np.array_equal(shown, session.display())


def readme_commands() -> list[list[str]]:
    """The `chunky ...` commands of the README's tour, as argument lists (comments dropped)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"\*\*On the command line\*\*.*?```bash\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.startswith("chunky ")]


def test_the_readme_commands_run_as_written_on_the_small_model(tmp_path, monkeypatch):
    """Each command runs as the README shows it; only photo.jpg and photos/ are the team's real photos."""
    from chunky.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "face.png").write_bytes(shared_file("faces/aligned1024/16_01.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # batch's default cache folder is under the home folder
    (tmp_path / "photo.jpg").write_bytes((photos / "face.png").read_bytes())  # PNG bytes: read by content
    commands = readme_commands()
    assert [c[1] for c in commands] == ["invert", "open", "evaluate", "batch"]
    for command in commands:
        assert main(command[1:]) == 0, " ".join(command)
    assert (tmp_path / "result" / "work.pt").is_file() and (tmp_path / "again" / "pasted_back.png").is_file()
    assert "chunky-w+ vs w+" in (tmp_path / "eval" / "table.md").read_text()
    figures = json.loads((tmp_path / "batch" / "summary.json").read_text())["photos"]["face.png"]
    assert figures["chunky"]["outside_changed_share"] == 0 and figures["global W+"]["outside_changed_share"] > 0.5
