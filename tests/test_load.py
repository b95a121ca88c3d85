"""A bounded load test on 127.0.0.1: one session floods the app with inversions while 8 normal clients run
whole flows (load -> invert -> edit -> export). The flood is refused at once (one long job per session), so
the normal clients get no "queue full" errors and only their own images; their latencies are printed."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from chunky.editor import ChunkyEditor

AT = {name: i - 1 for i, name in enumerate(app.SCREEN_PARTS) if i}
CLIENTS, FLOOD = 8, 40


@pytest.fixture(scope="module")
def server():
    editor = ChunkyEditor.tiny()
    demo = app.build_demo(editor)
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        prevent_thread_lock=True, server_name="127.0.0.1", quiet=True
    )
    yield demo.local_url, editor
    demo.close()


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_one_flooding_session_does_not_lock_out_eight_normal_clients(server, tmp_path, capsys):
    from gradio_client import Client, handle_file

    url, editor = server
    sliders = len(editor.directions())
    flooder = Client(url, verbose=False)
    flooder.predict(1, api_name="/random_face")
    flood = [
        flooder.submit("W+", "preview", 40, 0, 0, "fp32", ["skin", "hair"], False, api_name="/invert")
        for _ in range(FLOOD)
    ]
    errors, wrong, timings, lock = [], [], {}, threading.Lock()

    def user(index: int) -> None:
        client, seed = Client(url, verbose=False), 200 + index
        photo = tmp_path / f"{seed}.png"
        Image.fromarray(editor.random_face(seed)).save(photo)
        try:
            steps = {}
            for name, call in (
                ("load", lambda: client.predict(handle_file(str(photo)), 0, True, api_name="/load")),
                (
                    "invert",
                    lambda: client.predict(
                        "W+", "preview", 10, 0, 0, "fp32", ["skin", "hair", "eyes"], False, api_name="/invert"
                    ),
                ),
                ("edit", lambda: client.predict([], 1.5, *[0.0] * (sliders - 1), api_name="/edit")),
                (
                    "export",
                    lambda: client.predict(
                        [], 64, False, False, False, 1.5, *[0.0] * (sliders - 1), api_name="/export"
                    ),
                ),
            ):
                start = time.perf_counter()
                out = call()
                steps[name] = time.perf_counter() - start
                if out[AT["status"]].startswith("⚠"):
                    raise AssertionError(f"{name}: {out[AT['status']]}")
                if name == "load" and not np.array_equal(read(out[AT["crop"]]), editor.random_face(seed)):
                    wrong.append((index, name))
                if name == "export":
                    files = {Path(p).name: p for p in out[-2]}
                    if not np.array_equal(
                        read(files["aligned_crop.png"]), editor.random_face(seed)
                    ) or not np.array_equal(read(files["edited.png"]), read(out[AT["result"]])):
                        wrong.append((index, name))
            with lock:
                timings[index] = steps
        except Exception as error:  # collected: one failure must not hide the others
            with lock:
                errors.append(f"client {index}: {error!r}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - began
    flood_notes = [job.result(timeout=600)[AT["status"]] for job in flood]
    refused = sum("already have" in note for note in flood_notes)
    with capsys.disabled():
        print(
            f"\nload test: 1 session flooding {FLOOD} inversions + {CLIENTS} clients (load, invert 10 steps, edit, "
            f"export); wall {wall:.1f} s; flood refused at once: {refused}/{FLOOD}"
        )
        for name in ("load", "invert", "edit", "export"):
            values = sorted(t[name] for t in timings.values())
            if values:
                print(f"  {name:<7} p50 {values[len(values) // 2]:6.2f} s   max {values[-1]:6.2f} s")
    assert errors == [] and wrong == [] and len(timings) == CLIENTS
    assert refused >= FLOOD - 1  # at most one of the flood ran
