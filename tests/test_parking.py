"""Work parked when a tab closes: taken back once by the same token, never by another, gone after its time."""

from chunky.parking import Parking, is_token, new_token
from tests.conftest import held_by_a_long_job


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_parked_work_is_taken_back_once_by_its_own_token_only():
    parking = Parking(keep_s=60)
    mine, theirs = new_token(), new_token()
    work = object()
    parking.park(mine, work)
    assert parking.take(theirs) is None
    assert parking.take(mine) is work
    assert parking.take(mine) is None  # taken: a second tab of the same browser does not get it too


def test_parked_work_expires_and_the_oldest_goes_first_when_full():
    clock = Clock()
    parking = Parking(keep_s=60, max_parked=2, clock=clock)
    tokens = [new_token() for _ in range(3)]
    for k, token in enumerate(tokens):
        parking.park(token, f"work {k}")
        clock.now += 1
    assert len(parking) == 2 and parking.take(tokens[0]) is None  # the oldest made room
    clock.now += 60
    assert parking.take(tokens[2]) is None  # parked 61 s ago: past keep_s


def test_parking_again_replaces_and_odd_tokens_are_ignored():
    parking = Parking()
    token = new_token()
    parking.park(token, "first")
    parking.park(token, "second")
    assert parking.take(token) == "second"
    for odd in (None, "", "short", 42, "x" * 22 + "/", "../../etc/passwd", "a b" * 11, "é" * 22):
        parking.park(odd, "work")
        assert parking.take(odd) is None
    assert len(parking) == 0
    assert is_token(new_token()) and new_token() != new_token()


def test_a_page_load_waits_a_bounded_time_for_a_busy_restored_session(monkeypatch):
    """Work whose stopped job still holds it: the page load gives up after `RESTORE_WAIT_S` with a message, and the
    work is parked again for the next reload, which restores it once it is free."""
    import time

    import app_actions
    from chunky.editor import ChunkyEditor
    from chunky.session import Session

    editor = ChunkyEditor.tiny()
    session = Session.start(editor, editor.random_face(3), skip_alignment=True)
    monkeypatch.setattr(app_actions, "PARKING", Parking())
    monkeypatch.setattr(app_actions, "RESTORE_WAIT_S", 0.3)
    restore = app_actions.restore_parked([])
    token = new_token()
    app_actions.PARKING.park(token, session)
    with held_by_a_long_job(session):
        start = time.monotonic()
        outputs = restore(token)
        status = outputs[app_actions.SCREEN_PARTS.index("status")]
        assert time.monotonic() - start < 2 and status == app_actions.STILL_STOPPING
    outputs = restore(token)
    assert outputs[app_actions.SCREEN_PARTS.index("status")] == app_actions.RESTORED
