"""Work parked when a tab closes: taken back once by the same token, never by another, gone after its time."""

from chunky.parking import Parking, is_token, new_token


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
    for odd in (None, "", "short", 42, "x" * 22 + "/", "../../etc/passwd", "a b" * 11):
        parking.park(odd, "work")
        assert parking.take(odd) is None
    assert len(parking) == 0
    assert is_token(new_token()) and new_token() != new_token()
