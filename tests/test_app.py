"""The app over its API (gradio_client against a launched demo in test mode)."""

import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from chunky.editor import ChunkyEditor, editor_from_environment
from chunky.errors import InvalidInputError
from chunky.workfile import read_work

ROOT = Path(__file__).resolve().parents[1]
AT = {name: i - 1 for i, name in enumerate(app.SCREEN_PARTS) if i}  # API outputs leave out the session state


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.tiny()


@pytest.fixture(scope="module")
def server(editor):
    demo = app.build_demo(editor)
    demo.queue(default_concurrency_limit=2).launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield demo.local_url
    demo.close()


def client_for(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def photo_file(tmp_path, seed, editor, name=None):
    path = tmp_path / (name or f"face{seed}.png")
    Image.fromarray(editor.random_face(seed)).save(path)
    return path


def invert(client, reproject, steps=10):
    return client.predict("W+", "preview", steps, 0, 4, "fp32", reproject, False, api_name="/invert")


def sliders(editor, first=0.0):
    return [first] + [0.0] * (len(editor.directions()) - 1)


def choices(update):
    return [c[0] if isinstance(c, (list, tuple)) else c for c in update["choices"]]


def test_random_face_is_deterministic_per_seed(editor):
    a, b, c = editor.random_face(1), editor.random_face(1), editor.random_face(2)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(InvalidInputError, match="truncation must be in \\[0, 1\\]"):
        editor.random_face(1, truncation=1.5)


def read(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_upload_invert_edit_freeze_undo_export(server, editor, tmp_path):
    from gradio_client import handle_file

    client = client_for(server)
    photo = photo_file(tmp_path, 5, editor)
    loaded = client.predict(handle_file(str(photo)), 0, True, api_name="/load")
    assert np.array_equal(read(loaded[AT["crop"]]), read(photo)) and "aligned crop" in loaded[AT["status"]]
    names = choices(loaded[AT["reproject"]])
    assert "skin" in names and "background" in names

    out = invert(client, [n for n in names if n != "background"])
    assert np.array_equal(read(out[AT["photo"]]), read(photo)) and "Done:" in out[AT["status"]]
    rows = {row[0]: row for row in out[AT["metrics"]]["data"]}
    assert rows["background"][1] is True and rows["skin"][1] is False and rows["skin"][3] > 0
    before = read(out[AT["result"]])
    # merge after inverting: codes carry over, an edit of the merged segment leaves the brows alone
    merged = client.predict(None, ["eyes", "nose"], "skin", api_name="/merge")
    assert "eyes+nose" in choices(merged[AT["targets"]]) and "carried over" in merged[AT["status"]]
    assert np.array_equal(read(merged[AT["result"]])[:12], before[:12])  # far from eyes and nose: unchanged
    edited = client.predict(["eyes+nose"], *sliders(editor, 3.0), api_name="/edit")
    changed = np.abs(read(edited[AT["result"]]).astype(int) - before).sum(axis=2) > 0
    assert changed.any() and edited[AT["targets"]]["value"] == ["eyes+nose"]
    # a refused action says why and changes nothing
    refused = client.predict(["eyes+nose"], ["background"], 10, *sliders(editor, 3.0), api_name="/freeze")
    assert refused[AT["status"]].startswith("⚠") and "taken from the photo" in refused[AT["status"]]
    frozen = client.predict(["eyes+nose"], [], 10, *sliders(editor, 3.0), api_name="/freeze")
    assert "Frozen" in frozen[AT["status"]] and all(v == 0 for v in frozen[len(AT) :])
    assert np.array_equal(read(frozen[AT["photo"]]), read(photo))  # the photo panel still shows the photo
    assert np.array_equal(read(client.predict(api_name="/undo")[AT["result"]]), read(edited[AT["result"]]))
    tuned = client.predict([], ["hair", "hair"], 10, *sliders(editor), api_name="/tune")
    assert "Fine-tuned hair in" in tuned[AT["status"]]
    undone = client.predict(api_name="/undo")
    assert "Undid" in undone[AT["status"]]
    reference = photo_file(tmp_path, 6, editor)
    transferred = client.predict([], handle_file(str(reference)), "hair", True, *sliders(editor), api_name="/transfer")
    assert "Took the hair" in transferred[AT["status"]]
    offers = client.predict([], "hair", 3, *sliders(editor), api_name="/variations")
    assert len(offers[-1]) == 4
    refined = client.predict([], *sliders(editor), api_name="/refine")
    assert "refined" in refined[AT["status"]]

    # export with a slider value that never had its own event: the export holds exactly that edit
    exported = client.predict([], 64, False, False, False, *sliders(editor, 2.0), api_name="/export")
    shown, files, grid = read(exported[AT["result"]]), exported[-2], read(exported[-1])
    by_name = {Path(p).name: p for p in files}
    assert Image.open(by_name["pasted_back.png"]).size == Image.open(photo).size
    assert np.array_equal(read(by_name["edited.png"]), shown) and np.array_equal(read(by_name["comparison.png"]), grid)
    again = read_work(editor, by_name["work.pt"])
    assert np.array_equal(again.display(), shown) and again.strengths() == {editor.directions()[0].name: 2.0}


def test_app_file_is_wiring_only():
    lines = (ROOT / "app.py").read_text().splitlines()
    assert len(lines) <= 400, f"app.py has {len(lines)} lines; the layout and handlers must stay wiring only"


def test_bad_uploads_give_clear_messages_and_the_app_keeps_working(server, tmp_path, editor):
    from gradio_client import handle_file

    client = client_for(server)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    huge = tmp_path / "huge.png"
    data = bytearray((tmp_path / "tiny.png").read_bytes())
    data[16:24] = (12000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    huge.write_bytes(bytes(data))
    loaded = client.predict(7, api_name="/random_face")
    assert "Random face #7" in loaded[AT["status"]] and np.array_equal(read(loaded[AT["crop"]]), editor.random_face(7))
    for path, message in ((text, "not an image"), (tiny, "at least 64"), (huge, "megapixels")):
        out = client.predict(handle_file(str(path)), 0, True, api_name="/load")
        assert out[AT["status"]].startswith("⚠") and message in out[AT["status"]]
        assert out[AT["crop"]] == {"__type__": "update"}  # "no change": the loaded photo stays on the page
    assert (
        "Run the inversion first"
        in client.predict([], 256, False, False, False, *sliders(editor), api_name="/export")[AT["status"]]
    )
    assert "Nothing to undo" in client.predict(api_name="/undo")[AT["status"]]
    wide = tmp_path / "wide.png"
    Image.fromarray(np.concatenate([editor.random_face(8)] * 2, axis=1)).save(wide)  # 128 x 64, not square
    out = client.predict(handle_file(str(wide)), 0, False, api_name="/load")
    assert "not square" in out[AT["status"]] and read(out[AT["crop"]]).shape == (64, 64, 3)


def test_two_clients_inverting_at_once_each_get_their_own_result(server, editor, tmp_path):
    from gradio_client import handle_file

    results = {}

    def run(seed):
        client = client_for(server)
        client.predict(handle_file(str(photo_file(tmp_path, seed, editor))), 0, True, api_name="/load")
        out = invert(client, ["skin", "hair"])
        results[seed] = (read(out[AT["photo"]]), read(out[AT["result"]]))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(results) == {11, 12}
    for seed, (target, composite) in results.items():
        assert np.array_equal(target, editor.random_face(seed))
        background = composite[:6, :6]  # the kept background corner is exactly this user's photo
        assert np.array_equal(background, editor.random_face(seed)[:6, :6])


def test_missing_weights_page_explains_instead_of_crashing(monkeypatch):
    monkeypatch.setenv("CHUNKY_MODEL", "ffhq")  # asked for by name, so nothing else is served
    editor, error = editor_from_environment()  # offline, no weights here
    assert editor is None
    assert "CHUNKY_WEIGHTS_DIR=<folder>" in error
    demo = app.build_demo(None, startup_error=error)
    texts = [block.value for block in demo.blocks.values() if isinstance(getattr(block, "value", None), str)]
    assert error in texts  # the whole fix, verbatim (a text box: nothing is parsed as Markdown)
    assert any("CHUNKY_MODEL=small python app.py" in t for t in texts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp_path, **env):
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "CHUNKY_MODEL")}
    environment |= {"GRADIO_SERVER_PORT": str(port), "HOME": str(tmp_path), **env}
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return process, port


def wait_for_page(port: int, timeout: float) -> str:
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=1) as reply:
                return reply.read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing served on port {port} within {timeout} s")


def served_page(tmp_path, **env) -> tuple[str, float]:
    """Start `app.py` with the Hub unreachable (its address a closed port here: the one quick check fails at once,
    as offline) and ``env``; return its page config and the seconds it took to be served."""
    process, port = start_app(tmp_path, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), **env)
    began = time.monotonic()
    try:
        config = wait_for_page(port, timeout=90)
        return config, time.monotonic() - began
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_without_network_or_weights_the_small_face_model_is_served_within_30_seconds(tmp_path):
    config, took = served_page(tmp_path)
    assert "Small face model" in config and "64 px" in config  # the page says what is served ...
    assert "could not be downloaded" in config and "CHUNKY_WEIGHTS_DIR" in config  # ... and why
    assert took < 30, f"the page took {took:.1f} s"


def test_with_the_ffhq_model_asked_for_by_name_the_explanation_is_served_within_10_seconds(tmp_path):
    config, took = served_page(tmp_path, CHUNKY_MODEL="ffhq")
    assert "could not be loaded" in config and "CHUNKY_WEIGHTS_DIR" in config
    assert took < 10, f"the explanation page took {took:.1f} s"


def listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_gradio_server_name_is_honoured(tmp_path):
    process, port = start_app(tmp_path, CHUNKY_MODEL="tiny", GRADIO_SERVER_NAME="0.0.0.0")
    try:
        wait_for_page(port, timeout=120)
        addresses = listening_addresses(port)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "00000000" in addresses, f"listening on {addresses}, not on all interfaces"


def test_eight_clients_times_five_requests_each_get_their_own_image(server, editor, tmp_path):
    from gradio_client import handle_file

    errors, mismatches = [], []

    def user(index):
        client = client_for(server)
        for request in range(5):
            seed = 100 + 10 * index + request
            try:
                loaded = client.predict(handle_file(str(photo_file(tmp_path, seed, editor))), 0, True, api_name="/load")
                if not np.array_equal(read(loaded[AT["crop"]]), editor.random_face(seed)):
                    mismatches.append(seed)
            except Exception as error:  # collected, so one failure does not hide the others
                errors.append(repr(error))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == [] and mismatches == []


def test_cancel_stops_the_inversion_and_the_session_stays_usable(server, editor, tmp_path):
    from gradio_client import handle_file

    client = client_for(server)
    client.predict(handle_file(str(photo_file(tmp_path, 21, editor))), 0, True, api_name="/load")
    job = client.submit("W+", "best", 1000, 0, 4, "fp32", ["skin", "hair"], False, api_name="/invert")
    time.sleep(3)
    client.predict(api_name="/cancel")
    note = job.result(timeout=120)[AT["status"]]
    assert note.startswith("Stopped after") and "1000" not in note.split("steps")[0]
    assert "Done:" in invert(client, ["skin"])[AT["status"]]


def test_cancel_reaches_an_inversion_that_waits_for_its_turn(server, editor, tmp_path):
    """One visitor's long inversion holds the only slot; another's waits in line. The second visitor's Cancel
    takes their job out of the line at once: it never runs, and says so."""
    from gradio_client import handle_file

    first, second = client_for(server), client_for(server)
    for client, seed in ((first, 41), (second, 42)):
        client.predict(handle_file(str(photo_file(tmp_path, seed, editor))), 0, True, api_name="/load")
    running = first.submit("W+", "best", 1000, 0, 4, "fp32", ["skin", "hair"], False, api_name="/invert")
    time.sleep(2)
    waiting = second.submit("W+", "best", 1000, 0, 4, "fp32", ["skin"], False, api_name="/invert")
    time.sleep(2)
    assert not waiting.done()
    pressed = time.monotonic()
    second.predict(api_name="/cancel")
    note = waiting.result(timeout=30)[AT["status"]]
    assert "Cancelled before it started" in note and time.monotonic() - pressed < 5
    assert not running.done()
    first.predict(api_name="/cancel")
    assert running.result(timeout=120)[AT["status"]].startswith("Stopped after")


def test_a_request_stops_at_the_time_limit_baselines_included(server, editor, tmp_path, monkeypatch):
    from gradio_client import handle_file

    monkeypatch.setattr(app, "MAX_SECONDS", 1.0)
    client = client_for(server)
    client.predict(handle_file(str(photo_file(tmp_path, 31, editor))), 0, True, api_name="/load")
    began = time.monotonic()
    out = client.predict("W+", "best", 1000, 0, 4, "fp32", ["skin", "hair"], True, api_name="/invert")
    assert out[AT["status"]].startswith("Stopped after") and "1 s limit" in out[AT["status"]]
    assert time.monotonic() - began < 30 and out[AT["baselines"]] is not None


def test_the_docs_gradio_client_example_runs_against_a_running_app(server, editor, tmp_path, capsys):
    """docs/api.md's gradio_client example, as written (only the address and the photo are this test's)."""
    import re

    text = (Path(app.__file__).parent / "docs" / "api.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "gradio_client" in block)
    code = code.replace('"http://127.0.0.1:7860"', repr(server))
    code = code.replace('"me.jpg"', repr(str(photo_file(tmp_path, 51, editor))))
    exec(compile(code, "docs/api.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1].startswith("Exported exactly what is shown")


def test_every_example_starts_a_session_and_the_astronaut_is_aligned_on_a_face():
    """The examples gallery: the real astronaut photo goes through detection and alignment (dlib offline), each
    generated face is used as an aligned crop; an index past the gallery is refused in the status line."""
    from chunky import views

    small = ChunkyEditor.small()
    page = app.Page(small, views.slider_directions(small.directions(), app.MAX_SLIDERS))
    shown = views.examples(small)
    assert len(shown) == 1 + len(views.EXAMPLE_SEEDS)
    for index in range(len(shown)):
        out = page.example(type("Select", (), {"index": index})())
        status, crop = out[app.SCREEN_PARTS.index("status")], out[app.SCREEN_PARTS.index("crop")]
        session = out[0]
        if index == 0:
            assert "face(s) found, using face 0" in status and not session.aligned.skipped
            assert session.aligned.face_count >= 1 and crop.shape[0] == small.generator.size
        else:
            assert "used as an aligned crop" in status and np.array_equal(crop, shown[index][0])
    refused = page.example(type("Select", (), {"index": len(shown)})())
    assert refused[1].startswith("⚠") and "from 0 to" in refused[1]
