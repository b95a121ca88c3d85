"""The fair job queue: one long job per owner, a bounded waiting line served in order, honest estimates."""

import threading
import time

import pytest

from chunky.jobs import BusyError, CancelledBeforeStartError, JobQueue


def test_a_second_job_of_the_same_owner_is_refused_at_once():
    jobs, owner, started = JobQueue(slots=1, max_waiting=4), object(), threading.Event()
    release = threading.Event()

    def first():
        with jobs.admit(owner):
            started.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(10)
    began = time.perf_counter()
    with pytest.raises(BusyError, match=r"already have a job running or waiting.*\(inversion\)"):
        with jobs.admit(owner, label="inversion"):
            pass
    assert time.perf_counter() - began < 0.5 and jobs.busy(owner)
    release.set()
    thread.join(10)
    assert not jobs.busy(owner)
    with jobs.admit(owner):  # free again once the first finished
        pass


def test_the_waiting_line_is_bounded_served_in_order_and_told_how_many_are_ahead():
    jobs = JobQueue(slots=1, max_waiting=2, typical_seconds=30)
    order, waits, release = [], {}, threading.Event()
    owners = [object() for _ in range(4)]
    holding = threading.Event()

    def run(k):
        def on_wait(ahead, eta):
            waits.setdefault(k, (ahead, eta))

        with jobs.admit(owners[k], on_wait=on_wait):
            order.append(k)
            if k == 0:
                holding.set()
                release.wait(10)

    threads = [threading.Thread(target=run, args=(0,))]
    threads[0].start()
    holding.wait(10)
    for k in (1, 2):
        threads.append(threading.Thread(target=run, args=(k,)))
        threads[-1].start()
        time.sleep(0.3)  # arrival order
    with pytest.raises(BusyError, match="The server is busy: 3 jobs are running or waiting"):
        with jobs.admit(owners[3]):
            pass
    assert waits[1] == (1, 30.0) and waits[2] == (2, 60.0)
    release.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2]


def test_a_failing_job_frees_its_owner_and_slot():
    jobs, owner = JobQueue(slots=1, max_waiting=0), object()
    with pytest.raises(RuntimeError):
        with jobs.admit(owner):
            raise RuntimeError("boom")
    with jobs.admit(owner):
        pass


def test_a_job_cancelled_while_it_waits_leaves_the_line_at_once_and_never_runs():
    jobs = JobQueue(slots=1, max_waiting=4)
    holding, release, cancel = threading.Event(), threading.Event(), threading.Event()
    ran, outcome = [], {}

    def first():
        with jobs.admit("first"):
            holding.set()
            release.wait(10)

    def second():
        try:
            with jobs.admit("second", label="invert", cancelled=cancel.is_set):
                ran.append("second")
        except CancelledBeforeStartError as error:
            outcome["error"], outcome["at"] = str(error), time.perf_counter()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    holding.wait(10)
    threads[1].start()
    time.sleep(0.3)
    assert jobs.busy("second")
    pressed = time.perf_counter()
    cancel.set()
    threads[1].join(10)
    assert outcome["error"] == "Cancelled before it started (invert); nothing changed."
    assert outcome["at"] - pressed < 1.0 and not jobs.busy("second") and not ran
    release.set()
    threads[0].join(10)
    with jobs.admit("second"):  # the owner may start again
        pass
