"""Work kept for a while after its browser tab closes, so a reload (or a tab closed by mistake) gets it back.

A browser holds a random token (`new_token`, kept in its local storage); when one of its tabs closes, the
server parks that tab's work under the token (`Parking.park`); when a page of the same browser opens within
``keep_s``, it takes the work back (`Parking.take`). Only that browser knows its token. Parked work stays in
the server's session budget (`chunky.session_budget`), which may still set it aside when memory runs short.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

TOKEN_BYTES = 16  # 128 random bits: not guessable


def new_token() -> str:
    """A fresh random token for one browser (URL-safe text, 22 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_token(value) -> bool:
    """Whether ``value`` looks like a token `new_token` made (anything else from a browser is ignored)."""
    return (
        isinstance(value, str)
        and len(value) == 22
        and value.isascii()
        and value.replace("-", "a").replace("_", "a").isalnum()
    )


class Parking:
    """Args:
    keep_s: how long parked work waits for its browser.
    max_parked: at most this many browsers' work is kept; the oldest goes first.
    clock: seconds, for tests (default `time.monotonic`).
    """

    def __init__(self, keep_s: float = 900.0, max_parked: int = 500, clock: Callable[[], float] = time.monotonic):
        self.keep_s, self.max_parked, self.clock = keep_s, max_parked, clock
        self._parked: dict[str, tuple[object, float]] = {}  # token -> (work, when parked); oldest first
        self._lock = threading.Lock()

    def park(self, token: str, work) -> None:
        """Keep ``work`` under ``token`` (replacing what that browser parked before)."""
        if not is_token(token) or work is None:
            return
        with self._lock:
            self._parked.pop(token, None)
            self._parked[token] = (work, self.clock())
            self._prune()

    def take(self, token) -> object | None:
        """The work parked under ``token`` (removed from the parking), or None: nothing parked, or too long ago."""
        with self._lock:
            self._prune()
            found = self._parked.pop(token, None) if is_token(token) else None
        return None if found is None else found[0]

    def __len__(self) -> int:
        with self._lock:
            self._prune()
            return len(self._parked)

    def _prune(self) -> None:
        now = self.clock()
        for token in [t for t, (_, when) in self._parked.items() if now - when > self.keep_s]:
            del self._parked[token]
        while len(self._parked) > self.max_parked:
            del self._parked[next(iter(self._parked))]
