"""Fair admission of long jobs (inversions, re-projections, transfers, fine-tuning) on a shared server.

Each owner (one user's session) has at most one long job queued or running: a second is refused at once
instead of taking a queue place. At most ``slots`` jobs run together; at most ``max_waiting`` wait, in
arrival order, and whoever waits is told how many are ahead and roughly how long that takes. Nothing here
knows about the UI; refusals are `BusyError`s with a message for the user.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from chunky.errors import ChunkyError


class BusyError(ChunkyError):
    """A job was not admitted: its owner has one already, or the server's waiting line is full."""


class CancelledBeforeStartError(ChunkyError):
    """A job left the waiting line because its owner cancelled it."""


class JobQueue:
    """Args:
    slots: jobs that run at once (the hardware's share: 1 on a small CPU Space).
    max_waiting: jobs that may wait for a slot; more are refused with a "busy, try again" message.
    typical_seconds: the duration assumed for a job before any has finished (for wait estimates).
    """

    def __init__(self, slots: int = 1, max_waiting: int = 8, typical_seconds: float = 60.0):
        if slots < 1 or max_waiting < 0:
            raise ValueError("slots must be >= 1 and max_waiting >= 0")
        self.slots, self.max_waiting = slots, max_waiting
        self._lock = threading.Condition()
        self._running: set[int] = set()
        self._waiting: deque[int] = deque()
        self._owners: set[int] = set()
        self._average = typical_seconds
        self.poll_s = 0.25  # how often a waiting job looks at its cancel flag and reports its place

    def estimate(self, ahead: int) -> float:
        """Seconds until a job with ``ahead`` jobs before it in line starts (running ones included)."""
        return self._average * ahead / self.slots

    @contextmanager
    def admit(
        self,
        owner: object,
        *,
        label: str = "job",
        on_wait: Callable[[int, float], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[None]:
        """Run the body as ``owner``'s one job, once a slot is free.

        Raises:
            BusyError: ``owner`` already has a job queued or running, or too many jobs are waiting.
            CancelledBeforeStartError: ``cancelled()`` became true while the job waited.
        Args:
            on_wait: called while waiting with (jobs ahead, estimated seconds), every ``poll_s`` seconds.
            cancelled: asked while waiting (at least every ``poll_s`` seconds); true leaves the line at once.
        """
        key = id(owner)
        with self._lock:
            if key in self._owners:
                raise BusyError(
                    f"You already have a job running or waiting; wait for it to finish (or press Cancel) "
                    f"before starting another ({label})."
                )
            if len(self._running) >= self.slots and len(self._waiting) >= self.max_waiting:
                ahead = len(self._running) + len(self._waiting)
                raise BusyError(
                    f"The server is busy: {ahead} jobs are running or waiting (about "
                    f"{self.estimate(ahead):.0f} s). Please try again in a few minutes."
                )
            self._owners.add(key)
            self._waiting.append(key)
            try:
                while len(self._running) >= self.slots or self._waiting[0] != key:
                    if cancelled is not None and cancelled():
                        raise CancelledBeforeStartError(f"Cancelled before it started ({label}); nothing changed.")
                    ahead = len(self._running) + self._waiting.index(key)
                    if on_wait is not None:
                        on_wait(ahead, self.estimate(ahead))
                    self._lock.wait(timeout=self.poll_s)
            except BaseException:
                self._waiting.remove(key)
                self._owners.discard(key)
                self._lock.notify_all()
                raise
            self._waiting.popleft()
            self._running.add(key)
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(key)
                self._owners.discard(key)
                self._average = 0.7 * self._average + 0.3 * (time.perf_counter() - start)
                self._lock.notify_all()

    def running(self) -> int:
        """How many jobs run now."""
        with self._lock:
            return len(self._running)

    def busy(self, owner: object) -> bool:
        """Whether ``owner`` has a job queued or running."""
        with self._lock:
            return id(owner) in self._owners
