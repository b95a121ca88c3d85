"""The app over its API (gradio_client against a launched demo in test mode)."""

import os
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

import app
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError

INVERT_FAST = dict(space_name="W+", preset_name="Preview", steps_value=10, reg=0, dilate=4, precision_name="fp32",
                   with_baselines=False)


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


def invert(client, reproject):
    return client.predict("W+", "Preview", 10, 0, 4, "fp32", reproject, False, api_name="/invert")


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
    crop, status = loaded[0], loaded[1]
    assert np.array_equal(read(crop), read(photo)) and "aligned crop" in status
    names = [choice[0] if isinstance(choice, (list, tuple)) else choice for choice in loaded[4]["choices"]]
    assert "skin" in names and "background" in names

    merged = client.predict(["eyes", "brows"], api_name="/merge")
    merged_names = [c[0] if isinstance(c, (list, tuple)) else c for c in merged[2]["choices"]]
    assert "eyes+brows" in merged_names and "eyes" not in merged_names and len(merged_names) == len(names) - 1
    names = merged_names
    target, composite, gallery, table, note = invert(client, [n for n in names if n != "background"])
    assert np.array_equal(read(target), read(photo)) and "Done: 10 steps" in note
    assert len(gallery) == len(names) - 1
    rows = {row[0]: row for row in table["data"]}
    assert rows["background"][1] is True and rows["skin"][1] is False and rows["skin"][3] > 0
    before = read(composite)

    edited = read(client.predict(["skin"], 2.5, *[0.0] * (len(editor.directions()) - 1), api_name="/edit"))
    assert edited.shape == before.shape and not np.array_equal(edited, before)
    frozen = client.predict([], 10, api_name="/freeze")
    assert np.array_equal(read(frozen[0]), edited) and all(v == 0 for v in frozen[1:])
    undone = client.predict(api_name="/undo")
    assert np.array_equal(read(undone[0]), before)
    # freeze and re-project a segment from its current code; a refused re-projection changes nothing
    assert np.array_equal(read(client.predict(["skin"], 2.5, *[0.0] * (len(editor.directions()) - 1), api_name="/edit")), edited)
    with pytest.raises(Exception, match="taken from the photo"):
        client.predict(["background"], 10, api_name="/freeze")
    reprojected = read(client.predict(["hair"], 10, api_name="/freeze")[0])
    assert reprojected.shape == edited.shape and not np.array_equal(reprojected, edited)
    assert np.array_equal(read(client.predict(api_name="/undo")[0]), before)
    # pivotal tuning of one segment changes the result; undo goes back
    tuned = client.predict(["hair"], 10, api_name="/tune")
    assert "Fine-tuned hair" in tuned[-1] and not np.array_equal(read(tuned[1]), before)
    hair_loss = {row[0]: row[3] for row in tuned[3]["data"]}["hair"]
    assert hair_loss < rows["hair"][3]
    assert np.array_equal(read(client.predict(api_name="/undo")[0]), before)
    reference = photo_file(tmp_path, 6, editor)
    transferred = read(client.predict(handle_file(str(reference)), "hair", True, api_name="/transfer"))
    assert transferred.shape == before.shape and not np.array_equal(transferred, before)
    gallery = client.predict("hair", 3, api_name="/variations")
    assert len(gallery) == 4
    refined, overlay = client.predict(api_name="/refine")
    assert read(refined).shape == before.shape and read(overlay).shape == read(photo).shape

    files = client.predict(api_name="/export")
    by_name = {p.split("/")[-1]: p for p in files}
    assert Image.open(by_name["pasted_back.png"]).size == Image.open(photo).size
    assert "comparison.png" in by_name and "codes_and_masks.pt" in by_name


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
    for path, message in ((text, "not an image"), (tiny, "at least 64"), (huge, "megapixels")):
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(path)), 0, True, api_name="/load")
    with pytest.raises(Exception, match="Run the inversion first"):
        client.predict(api_name="/export")
    loaded = client.predict(7, api_name="/random_face")
    assert "Random face #7" in loaded[1]
    assert np.array_equal(read(loaded[0]), editor.random_face(7))


def test_two_clients_inverting_at_once_each_get_their_own_result(server, editor, tmp_path):
    from gradio_client import handle_file

    results = {}

    def run(seed):
        client = client_for(server)
        client.predict(handle_file(str(photo_file(tmp_path, seed, editor))), 0, True, api_name="/load")
        target, composite, *_ = invert(client, ["skin", "hair"])
        results[seed] = (read(target), read(composite))

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
    monkeypatch.delenv("CHUNKY_MODEL", raising=False)
    editor, error = app.load_editor()  # offline, no weights here
    assert editor is None
    assert "CHUNKY_WEIGHTS_DIR" in error
    demo = app.build_demo(None, startup_error=error)
    texts = [block.value for block in demo.blocks.values() if hasattr(block, "value") and isinstance(block.value, str)]
    assert any("could not be loaded" in t and "CHUNKY_WEIGHTS_DIR" in t for t in texts)


def test_eight_clients_times_five_requests_each_get_their_own_image(server, editor, tmp_path):
    from gradio_client import handle_file

    errors, mismatches = [], []

    def user(index):
        client = client_for(server)
        for request in range(5):
            seed = 100 + 10 * index + request
            try:
                loaded = client.predict(handle_file(str(photo_file(tmp_path, seed, editor))), 0, True, api_name="/load")
                if not np.array_equal(read(loaded[0]), editor.random_face(seed)):
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
    job = client.submit("W+", "Best", 1000, 0, 4, "fp32", ["skin", "hair"], False, api_name="/invert")
    time.sleep(3)
    client.predict(api_name="/cancel")
    note = job.result(timeout=120)[-1]
    assert note.startswith("Cancelled after") and "1000" not in note.split("steps")[0]
    target, composite, gallery, table, note = invert(client, ["skin"])
    assert "Done: 10 steps" in note


def test_inversions_stop_at_the_time_limit(server, editor, tmp_path, monkeypatch):
    from gradio_client import handle_file

    monkeypatch.setattr(app, "MAX_SECONDS", 1.0)
    client = client_for(server)
    client.predict(handle_file(str(photo_file(tmp_path, 31, editor))), 0, True, api_name="/load")
    note = client.predict("W+", "Best", 1000, 0, 4, "fp32", ["skin", "hair"], False, api_name="/invert")[-1]
    assert note.startswith("Cancelled after") and "1 s limit" in note


def test_old_export_folders_are_deleted(monkeypatch, tmp_path):
    monkeypatch.setattr(app, "EXPORT_ROOT", tmp_path)
    old, new = tmp_path / "session-old", tmp_path / "session-new"
    old.mkdir()
    new.mkdir()
    (old / "pasted_back.png").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    app._prune_exports()
    assert not old.exists() and new.exists()
