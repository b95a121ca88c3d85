"""Per-visitor quotas for uploads and exports: one client cannot fill the server's disk budgets for everyone.
The upload quota is tested through a real server's upload route (HTTP), the export quota through the API."""

import httpx
import numpy as np
import pytest
from PIL import Image

import app
import app_actions
from chunky.editor import ChunkyEditor
from chunky.quota import ByteQuota, QuotaError, client_address

AT = {name: i - 1 for i, name in enumerate(app.SCREEN_PARTS) if i}  # API replies leave out the session state
MB = 2**20


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_a_quota_counts_bytes_per_client_over_a_sliding_window():
    clock = Clock()
    quota = ByteQuota(10 * MB, "uploads", window_s=3600, clock=clock)
    quota.charge("a", 6 * MB)
    clock.now = 1800
    quota.charge("a", 3 * MB)
    quota.check("a", 1 * MB)  # exactly the limit is allowed
    with pytest.raises(QuotaError) as refused:
        quota.check("a", 2 * MB)
    message = str(refused.value)
    assert "9 MB in the last 60 minutes, 2 MB more asked" in message and "limit is 10 MB" in message
    assert "Try again in 30 minutes" in message  # when the first 6 MB leave the window
    quota.check("b", 10 * MB)  # another client is not affected
    clock.now = 3601  # the first charge has left the window
    assert quota.used("a") == 3 * MB
    quota.check("a", 7 * MB)


def test_a_quota_remembers_a_bounded_number_of_clients():
    quota = ByteQuota(MB, "exports", max_clients=100)
    for k in range(1000):
        quota.charge(f"10.0.{k // 256}.{k % 256}", MB)
    assert len(quota._charges) == 100
    assert quota.used("10.0.3.231") == MB and quota.used("10.0.0.0") == 0  # the newest kept, the oldest forgotten


def test_the_client_behind_a_proxy_is_the_address_the_trusted_proxy_added():
    assert client_address("10.1.2.3", None, 0) == "10.1.2.3"
    assert client_address("10.1.2.3", "6.6.6.6, 8.8.8.8", 0) == "10.1.2.3"  # no proxy trusted: the header is ignored
    assert client_address("10.1.2.3", "6.6.6.6, 8.8.8.8", 1) == "8.8.8.8"  # what the client wrote itself is ignored
    assert client_address("10.1.2.3", "6.6.6.6, 8.8.8.8, 10.0.0.9", 2) == "8.8.8.8"
    assert client_address("10.1.2.3", "8.8.8.8", 2) == "10.1.2.3"  # fewer entries than proxies: the socket
    assert client_address(None, "", 1) == "unknown"


@pytest.fixture(scope="module")
def server():
    editor = ChunkyEditor.tiny()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_actions, "UPLOAD_QUOTA", ByteQuota(600_000, "uploads"))
        patch.setattr(app_actions, "EXPORT_QUOTA", ByteQuota(300_000, "exports"))
        patch.setattr(app_actions, "PROXY_HOPS", 1)
        demo = app.build_demo(editor)
        demo.queue(default_concurrency_limit=2).launch(
            prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, app_kwargs=app.upload_quota_middleware()
        )
        yield demo.local_url, editor
        demo.close()


def noisy_png(tmp_path, name, side) -> bytes:
    """A PNG of about 3 x side^2 bytes (noise does not compress)."""
    path = tmp_path / name
    rng = np.random.default_rng(side)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=0)
    return path.read_bytes()


def test_uploads_past_a_visitors_quota_are_refused_before_they_are_written(server, tmp_path):
    url, _ = server
    data = noisy_png(tmp_path, "photo.png", 250)  # ~190 KB; the test quota is 600 KB an hour
    upload = url + "gradio_api/upload"
    first = {"x-forwarded-for": "203.0.113.7"}
    statuses = [httpx.post(upload, files={"files": ("p.png", data)}, headers=first).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 413]
    refused = httpx.post(upload, files={"files": ("p.png", data)}, headers=first)
    assert refused.status_code == 413 and "Too many uploads from your address" in refused.text
    other = httpx.post(upload, files={"files": ("p.png", data)}, headers={"x-forwarded-for": "203.0.113.8"})
    assert other.status_code == 200  # another visitor is not affected
    forged = {"x-forwarded-for": "1.2.3.4, 203.0.113.7"}  # a client cannot escape by writing its own entry
    assert httpx.post(upload, files={"files": ("p.png", data)}, headers=forged).status_code == 413
    assert httpx.post(url + "gradio_api/queue/join", json={}, headers=first).status_code != 413  # other routes


def test_an_action_larger_than_any_input_is_refused_unread(server):
    """The body of an action (not an upload) over 16 MiB: refused 413 from its declared size; a normal action
    still passes."""
    url, _ = server
    join = url + "gradio_api/queue/join"
    big = b'{"data": ["' + b"A" * (17 << 20) + b'"]}'
    refused = httpx.post(join, content=big, headers={"content-type": "application/json"})
    assert refused.status_code == 413 and "at most 16 MiB" in refused.text
    assert httpx.post(join, json={}).status_code != 413


def test_a_body_without_a_declared_size_is_cut_off_at_the_limit():
    """`BodyLimit` around an app that reads the whole body: a 3 MiB body streamed in 1 MiB chunks with no
    Content-Length reaches the app as 2 MiB and then the client leaving; a small one arrives whole."""
    import asyncio

    from chunky.quota import BodyLimit

    def run(chunks: int) -> tuple[int, bool]:
        seen = {"bytes": 0, "left": False}

        async def reader(scope, receive, send):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    seen["left"] = True
                    return
                seen["bytes"] += len(message["body"])
                if not message.get("more_body"):
                    return

        messages = [{"type": "http.request", "body": b"A" * MB, "more_body": i < chunks - 1} for i in range(chunks)]

        async def receive():
            return messages.pop(0)

        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": []}
        asyncio.run(BodyLimit(reader, max_bytes=2 * MB)(scope, receive, None))
        return seen["bytes"], seen["left"]

    assert run(3) == (2 * MB, True)
    assert run(1) == (MB, False)


def test_exports_past_a_visitors_quota_are_refused_with_when_to_try_again(server, tmp_path):
    from gradio_client import Client

    url, editor = server
    client = Client(url, verbose=False, headers={"x-forwarded-for": "198.51.100.4"})
    client.predict(5, api_name="/random_face")
    client.predict("W+", "preview", 1, 0, 4, "fp32", ["skin"], False, api_name="/invert")
    sliders = [0.0] * len(editor.directions())
    export = lambda: client.predict([], 64, False, False, False, *sliders, api_name="/export")  # noqa: E731
    statuses = [export()[AT["status"]] for _ in range(6)]
    done = [s for s in statuses if s.startswith("Exported")]
    refused = [s for s in statuses if "Too many exports from your address" in s and "Try again in" in s]
    assert len(done) >= 1 and len(refused) >= 1 and len(done) + len(refused) == 6, statuses
    assert statuses[len(done) :] == refused  # once refused, refused until the window frees up
    other = Client(url, verbose=False, headers={"x-forwarded-for": "198.51.100.5"})
    other.predict(6, api_name="/random_face")
    other.predict("W+", "preview", 1, 0, 4, "fp32", ["skin"], False, api_name="/invert")
    assert other.predict([], 64, False, False, False, *sliders, api_name="/export")[AT["status"]].startswith("Exported")
