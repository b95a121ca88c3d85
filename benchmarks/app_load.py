"""Load test of the app on localhost (test mode, tiny model): simultaneous gradio_client users upload photos to
the /load endpoint (read, align, segment). Prints latency percentiles and throughput with the machine, and
checks that every reply is the sender's own image.

Usage: python benchmarks/app_load.py [--clients 8] [--requests 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: app.py is beside benchmarks/
from gradio_client import Client, handle_file  # noqa: E402
from PIL import Image  # noqa: E402

import app  # noqa: E402
from chunky.bench import machine_description  # noqa: E402
from chunky.editor import ChunkyEditor  # noqa: E402


def bench_app(clients: int = 8, requests: int = 5) -> dict:
    """Load test of the app in test mode on localhost: ``clients`` simultaneous gradio_client users each
    upload ``requests`` photos (the /load endpoint: read, align, segment). Latency percentiles and
    throughput; every reply is checked to be the sender's own image."""
    editor = ChunkyEditor.tiny()
    demo = app.build_demo(editor)
    demo.queue(default_concurrency_limit=2).launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    latencies, wrong, lock = [], 0, threading.Lock()
    with tempfile.TemporaryDirectory() as folder:

        def user(index: int) -> None:
            nonlocal wrong
            client = Client(demo.local_url, verbose=False)
            for r in range(requests):
                seed = 1000 * index + r
                path = Path(folder) / f"{seed}.png"
                Image.fromarray(editor.random_face(seed)).save(path)
                start = time.perf_counter()
                outputs = client.predict(handle_file(str(path)), 0, True, api_name="/load")
                crop = outputs[app.SCREEN_PARTS.index("crop") - 1]  # the API leaves out the session state
                elapsed = time.perf_counter() - start
                same = np.array_equal(np.asarray(Image.open(crop).convert("RGB")), editor.random_face(seed))
                with lock:
                    latencies.append(elapsed)
                    wrong += not same

        start = time.perf_counter()
        threads = [threading.Thread(target=user, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    demo.close()
    values = sorted(latencies)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {
        "clients": clients,
        "requests": len(values),
        "wrong": wrong,
        "throughput": len(values) / wall,
        "p50": pick(0.5),
        "p90": pick(0.9),
        "p99": pick(0.99),
        "wall": wall,
    }


def print_app_table(r: dict) -> None:
    print(
        f"App load test (test mode, /load), {r['clients']} clients x {r['requests'] // r['clients']} requests -- "
        f"{machine_description()}"
    )
    print(
        f"  {r['requests']} requests in {r['wall']:.1f} s: {r['throughput']:.1f} requests/s; "
        f"latency p50 {r['p50']:.2f} s, "
        f"p90 {r['p90']:.2f} s, p99 {r['p99']:.2f} s; replies with another user's image: {r['wrong']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="uploads per client")
    args = parser.parse_args()
    print_app_table(bench_app(args.clients, args.requests))


if __name__ == "__main__":
    main()
