"""Per-visitor byte quotas for a shared server: how much one client may upload, and export, per hour.

The folder budgets (`chunky.export.FolderBudget`) bound the disk as a whole; without a quota one client could
still fill it for everyone (uploads arrive at network speed). `ByteQuota` counts each client's bytes over a
sliding window and refuses the next request once the limit is reached, saying when it frees up.
`UploadQuota` applies one to Gradio's upload route, from the request's declared size, before a byte is
written. A client is its network address (`client_address`); behind a proxy (a Hugging Face Space) the
address the proxy adds to ``X-Forwarded-For``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from chunky.errors import ChunkyError


class QuotaError(ChunkyError):
    """A client used its byte quota for the current window."""


class ByteQuota:
    """Bytes charged per client over a sliding window.

    Args:
        limit_bytes: what one client may be charged within ``window_s`` (> 0).
        what: what is counted, for messages ("uploads", "exports").
        window_s: the window, seconds.
        max_clients: clients remembered at most (the least recently charged are forgotten first), so that
            many addresses cannot grow the table without bound.
        clock: seconds, for tests (default `time.monotonic`).
    """

    def __init__(
        self,
        limit_bytes: int,
        what: str,
        *,
        window_s: float = 3600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit_bytes <= 0:
            raise ValueError(f"limit_bytes must be positive, got {limit_bytes}")
        self.limit_bytes, self.what, self.window_s = limit_bytes, what, window_s
        self.max_clients, self.clock = max_clients, clock
        self._charges: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()  # client -> (time, bytes)
        self._lock = threading.Lock()

    def used(self, client: str) -> int:
        """Bytes charged to ``client`` within the window ending now."""
        with self._lock:
            return sum(n for _, n in self._recent(client))

    def check(self, client: str, nbytes: int = 0) -> None:
        """Raise `QuotaError` unless ``client`` may be charged ``nbytes`` more now."""
        with self._lock:
            charges = self._recent(client)
            used = sum(n for _, n in charges)
            if used + nbytes <= self.limit_bytes:
                return
            wait = self._wait_s(charges, used + nbytes - self.limit_bytes)
        raise QuotaError(
            f"Too many {self.what} from your address: {used / 2**20:.0f} MB in the last "
            f"{self.window_s / 60:.0f} minutes{f', {nbytes / 2**20:.0f} MB more asked' if nbytes else ''} "
            f"(the limit is {self.limit_bytes / 2**20:.0f} MB). Try again in {max(1, round(wait / 60))} minutes."
        )

    def charge(self, client: str, nbytes: int) -> None:
        """Record ``nbytes`` for ``client`` now."""
        with self._lock:
            self._recent(client).append((self.clock(), nbytes))
            self._charges.move_to_end(client)
            while len(self._charges) > self.max_clients:
                self._charges.popitem(last=False)

    def _recent(self, client: str) -> deque[tuple[float, int]]:
        """The client's charges within the window (older ones dropped); call with the lock held."""
        charges = self._charges.setdefault(client, deque())
        start = self.clock() - self.window_s
        while charges and charges[0][0] <= start:
            charges.popleft()
        return charges

    def _wait_s(self, charges: deque[tuple[float, int]], excess: int) -> float:
        """Seconds until charges worth ``excess`` bytes leave the window (the whole window when they never do)."""
        freed = 0
        for when, n in charges:
            freed += n
            if freed >= excess:
                return when + self.window_s - self.clock()
        return self.window_s


def client_address(host: str | None, forwarded_for: str | None, proxy_hops: int) -> str:
    """The client a request counts against: with ``proxy_hops`` = N > 0 trusted proxies in front of the server,
    the N-th address from the right of ``X-Forwarded-For`` (the one the outermost trusted proxy saw; entries
    further left are whatever the client wrote); else, or when the header is shorter, the socket's ``host``."""
    if proxy_hops > 0 and forwarded_for:
        addresses = [a.strip() for a in forwarded_for.split(",") if a.strip()]
        if len(addresses) >= proxy_hops:
            return addresses[-proxy_hops]
    return host or "unknown"


class UploadQuota:
    """ASGI middleware: a POST to a path ending in ``/upload`` is charged its declared ``Content-Length`` to the
    client's `ByteQuota` before it reaches the app; over the quota it is answered 413 with the quota's message,
    without a declared size 411. (The server refuses a body longer than its declared length, so the declared
    size is what gets written.)"""

    def __init__(self, app, *, quota: ByteQuota, proxy_hops: int = 0):
        self.app, self.quota, self.proxy_hops = app, quota, proxy_hops

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = scope["client"][0] if scope.get("client") else None
        client = client_address(host, headers.get("x-forwarded-for"), self.proxy_hops)
        declared = headers.get("content-length", "")
        if not declared.isdigit():
            await _plain_response(send, 411, "An upload must declare its size (Content-Length).")
            return
        try:
            self.quota.check(client, int(declared))
        except QuotaError as error:
            await _plain_response(send, 413, str(error))
            return
        self.quota.charge(client, int(declared))
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: the body of a request to any route but uploads (which `UploadQuota` charges) may hold at
    most ``max_bytes``: an action's inputs are small (the largest, the sketch canvas's strokes, at most 8 MiB), and
    Gradio keeps a session's last inputs. A larger declared ``Content-Length`` is answered 413 unread; a body
    without one is cut off there (the app sees the client leave)."""

    def __init__(self, app, *, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith("/upload"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _plain_response(send, 413, f"A request may hold at most {self.max_bytes >> 20} MiB.")
            return
        received = 0

        async def capped():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, capped, send)


def _headers(scope) -> dict[str, str]:
    """An ASGI request's headers, names in lower case."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _plain_response(send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
