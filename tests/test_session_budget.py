"""One memory budget for every session: idle work is set aside first (with a message when its owner comes back),
active work is never lost, and 300 sessions that each load a large photo stay within the budget while a normal
visitor keeps working."""

import json
import threading

import numpy as np
import pytest

import app
import app_actions
from chunky.config import InversionConfig
from chunky.editor import ChunkyEditor
from chunky.errors import InvalidInputError
from chunky.session import Session
from chunky.session_budget import SessionBudget

AT = {name: i for i, name in enumerate(app.SCREEN_PARTS)}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def editor():
    return ChunkyEditor.tiny()


def session_of(editor, seed):
    return Session.start(editor, editor.random_face(seed), skip_alignment=True)


def test_idle_sessions_are_released_oldest_first_and_told_why(editor):
    clock = Clock()
    sessions = [session_of(editor, k) for k in range(3)]
    for s in sessions:
        s.invert(InversionConfig(steps=1, perceptual="none"), baselines=True)
    each = sessions[0].memory_bytes()
    budget = SessionBudget(max_bytes=int(2.5 * each), idle_s=600, clock=clock)
    for k, s in enumerate(sessions[:2]):
        clock.now = 100.0 * k
        budget.track(s)
    clock.now = 700.0  # session 0 idle for 700 s, session 1 for 600 s
    budget.track(sessions[2])  # 3 sessions over a 2.5-session budget: the oldest idle one goes
    assert sessions[0].released and not sessions[1].released and not sessions[2].released
    assert budget.total_bytes() <= budget.max_bytes
    with pytest.raises(InvalidInputError, match="set aside after 12 minutes without an action"):
        with sessions[0].acting():
            pass
    assert sessions[0].memory_bytes() < 1024  # its photo, crop, segments and codes all given back


def test_active_work_is_never_released_even_over_budget(editor):
    clock = Clock()
    sessions = [session_of(editor, k) for k in range(3)]
    budget = SessionBudget(max_bytes=1, idle_s=600, clock=clock)
    for s in sessions:
        budget.track(s)
    clock.now = 599.0
    assert budget.enforce() == 0 and budget.over_budget()
    holding, done = threading.Event(), threading.Event()

    def act():  # an action in progress (another request's thread) holds session 1
        with sessions[1].acting(wait=True):
            holding.set()
            done.wait(10)

    worker = threading.Thread(target=act)
    worker.start()
    holding.wait(10)
    clock.now = 10_000.0
    assert budget.enforce() == 2
    done.set()
    worker.join(10)
    assert not sessions[1].released and sessions[0].released and sessions[2].released


def test_300_sessions_loading_large_photos_stay_within_the_budget_and_a_normal_visitor_keeps_working(
    editor, tmp_path, monkeypatch
):
    """Handlers called as the server calls them (test mode): 300 sessions each load a 2000 x 1500 photo
    (9 MB in memory) and go idle; the budget (120 MB) sets the idle ones aside, the sessions' total stays under
    it after every load, and a visitor who keeps acting (load, invert, edit, export) is never refused."""
    from PIL import Image

    clock = Clock()
    budget = SessionBudget(max_bytes=120 << 20, idle_s=600, clock=clock)
    monkeypatch.setattr(app_actions, "SESSIONS", budget)
    page = app.Page(editor, editor.directions())
    rng = np.random.default_rng(0)
    photo = tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(photo, compress_level=0)
    visitor = page.load_photo(str(photo), 0, True)[AT["session"]]
    held, worst = [], 0
    for k in range(300):
        clock.now = 60.0 * k  # one new visitor a minute; each stays idle after loading
        outputs = page.load_photo(str(photo), 0, True)
        assert not outputs[AT["status"]].startswith("⚠"), outputs[AT["status"]]
        held.append(outputs[AT["session"]])
        worst = max(worst, budget.total_bytes())
        if k % 5 == 0:  # the normal visitor acts every few minutes
            status = page.invert(visitor, "W+", "preview", 1, 0, 0, "fp32", ["skin"], False)[AT["status"]]
            assert status.startswith("Done"), status
        if k % 50 == 0:
            status = page.export(visitor, [], 64, False, False, False, None, *[0.0] * len(page.names))[AT["status"]]
            assert status.startswith("Exported"), status
    assert worst <= budget.max_bytes, worst
    released = sum(s.released != "" for s in held)
    assert released >= 280 and not visitor.released
    assert "set aside" in page.invert(held[0], "W+", "preview", 1, 0, 0, "fp32", ["skin"], False)[AT["status"]]


def test_300_api_sessions_over_http_stay_within_the_budget_while_a_normal_client_works(tmp_path, monkeypatch, capsys):
    """The same through Gradio's HTTP API: 300 API calls (each its own session, no heartbeat) load a large photo
    while a normal client keeps loading, inverting and exporting. After every load the sessions' total is within
    the budget, and so is everything the server's sessions hold (set-aside ones keep no photo, crop, segments or
    codes); nobody is refused."""
    import httpx
    from gradio_client import Client
    from PIL import Image

    rng = np.random.default_rng(1)
    photo = tmp_path / "large.png"
    Image.fromarray(rng.integers(0, 256, (750, 1000, 3), dtype=np.uint8)).save(photo, compress_level=1)
    budget = SessionBudget(max_bytes=40 << 20, idle_s=0.2)
    monkeypatch.setattr(app_actions, "SESSIONS", budget)
    editor = ChunkyEditor.tiny()
    demo = app.build_demo(editor)
    demo.queue(default_concurrency_limit=2).launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    url, at = demo.local_url, {name: i - 1 for i, name in enumerate(app.SCREEN_PARTS) if i}
    stop, normal_statuses = threading.Event(), []

    def normal_client():
        normal, sliders = Client(url, verbose=False), [0.0] * len(editor.directions())
        while not stop.is_set():
            normal.reset_session()
            normal_statuses.append(normal.predict(7, api_name="/random_face")[at["status"]])
            inverted = normal.predict("W+", "preview", 1, 0, 4, "fp32", ["skin"], False, api_name="/invert")
            normal_statuses.append(inverted[at["status"]])
            exported = normal.predict([], 64, False, False, False, *sliders, api_name="/export")
            normal_statuses.append(exported[at["status"]])

    worker = threading.Thread(target=normal_client)
    try:
        with httpx.Client(timeout=60) as http:
            uploaded = http.post(url + "gradio_api/upload", files={"files": ("large.png", photo.read_bytes())})
            data = [{"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}, 0, True]
            worker.start()
            statuses, worst, held = [], 0, 0
            for _ in range(300):  # each call to the /call route is a new session of an API client
                event = http.post(url + "gradio_api/call/load", json={"data": data}).json()["event_id"]
                reply = http.get(url + f"gradio_api/call/load/{event}").text
                statuses.append(json.loads(reply.split("data:", 1)[1])[1])
                sessions = [
                    v
                    for state in list(demo.server_app.state_holder.session_data.values())
                    for v in list(state.state_data.values())
                    if isinstance(v, Session)
                ]
                worst, held = max(worst, budget.total_bytes()), max(held, sum(s.memory_bytes() for s in sessions))
        stop.set()
        worker.join(120)
    finally:
        stop.set()
        demo.close()
    with capsys.disabled():
        print(f"\n300 HTTP sessions: worst tracked {worst / 2**20:.1f} MB, held {held / 2**20:.1f} MB (budget 40 MB)")
    refused = [s for s in statuses + normal_statuses if s.startswith("⚠")]
    assert not refused, refused[:3]
    assert len(statuses) == 300 and all("used as an aligned crop" in s for s in statuses), statuses[:3]
    assert worst <= budget.max_bytes
    assert held <= budget.max_bytes + 2 * 750 * 1000 * 3  # the budget, and at most the two sessions being loaded
    assert len(normal_statuses) >= 3
