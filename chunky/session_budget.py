"""One memory budget for every session a server holds.

Sessions live in the web server's state for hours (API clients send no heartbeat), so a few hundred visitors
who each loaded a large photo could fill a Space's memory. `SessionBudget` keeps their total under
``max_bytes``: after every action it releases sessions (`chunky.session.Session.release`), the ones without
an action for longest first, but only those idle for at least ``idle_s``; a released session's next action is
refused with a message that says why and what to do. When every session is active the budget is exceeded
rather than anyone's running work lost: `over_budget` lets a server refuse new photos meanwhile.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

RELEASED = (
    "Your work was set aside after {minutes:.0f} minutes without an action, to make room for other visitors. "
    "Load the photo again, or open the work.pt you exported."
)


class SessionBudget:
    """Args:
    max_bytes: the sessions' total memory (`Session.memory_bytes`) to stay under.
    idle_s: a session is released only after this long without an action.
    clock: seconds, for tests (default `time.monotonic`).
    """

    def __init__(self, max_bytes: int, idle_s: float = 600.0, clock: Callable[[], float] = time.monotonic):
        self.max_bytes, self.idle_s, self.clock = max_bytes, idle_s, clock
        self._sessions: dict[int, tuple[weakref.ref, float, int]] = {}  # id -> (session, last action, bytes)
        self._lock = threading.Lock()

    def track(self, session) -> None:
        """Record an action of ``session`` (now) and its memory; then release idle sessions while over budget."""
        with self._lock:
            self._sessions[id(session)] = (weakref.ref(session), self.clock(), session.memory_bytes())
        self.enforce()

    def total_bytes(self) -> int:
        """The memory of the tracked sessions still alive and not released."""
        with self._lock:
            return sum(size for ref, _, size in self._live())

    def over_budget(self) -> bool:
        return self.total_bytes() > self.max_bytes

    def enforce(self) -> int:
        """Release idle sessions, least recently active first, until the total is within the budget.
        Returns how many were released."""
        released = 0
        with self._lock:
            entries = sorted(self._live(), key=lambda entry: entry[1])  # oldest action first
            total = sum(size for _, _, size in entries)
            now = self.clock()
            for ref, last, size in entries:
                if total <= self.max_bytes:
                    break
                session = ref()
                idle = now - last
                if session is None or idle < self.idle_s:
                    continue
                if session.release(RELEASED.format(minutes=idle / 60)):
                    del self._sessions[id(session)]
                    total -= size
                    released += 1
        return released

    def _live(self) -> list[tuple[weakref.ref, float, int]]:
        """Entries whose session is alive and not released (dead ones are forgotten)."""
        for key in [k for k, (ref, _, _) in self._sessions.items() if ref() is None or ref().released]:
            del self._sessions[key]
        return list(self._sessions.values())
