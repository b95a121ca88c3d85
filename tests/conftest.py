"""Shared test setup: offline Hub, tiny seeded generators, the team's ../shared data (skipped when absent)."""

import contextlib
import os
import threading

# Before anything imports huggingface_hub or gradio: they read these at import time. Tests marked
# real_weights (`CHUNKY_REAL_WEIGHTS=1 python -m pytest -m real_weights`) need the network or
# CHUNKY_WEIGHTS_DIR, so only they leave both alone.
REAL_WEIGHTS = os.environ.get("CHUNKY_REAL_WEIGHTS") == "1"
if not REAL_WEIGHTS:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("CHUNKY_WEIGHTS_DIR", None)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
# The app's calibration would compile the layer tails (chunky.fusion) in every app a test starts, seconds each:
# tests/test_fusion.py compiles them on purpose, the others run them op by op.
os.environ["CHUNKY_FUSION"] = "off"

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from chunky.generator import random_generator  # noqa: E402

# Tests run tiny models, often from several threads at once (app server and clients): one intra-op thread
# each avoids OpenMP threads spinning against each other (measured: a 16x slower walk test with 2 threads
# on a busy 2-core machine).
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_weights: needs the real FFHQ generator and face models (downloads them); "
        "skipped unless CHUNKY_REAL_WEIGHTS=1",
    )


def pytest_collection_modifyitems(config, items):
    if REAL_WEIGHTS:
        return
    skip = pytest.mark.skip(
        reason="needs the real weights and network access: run `python -m chunky doctor`, or "
        "CHUNKY_REAL_WEIGHTS=1 python -m pytest -m real_weights"
    )
    for item in items:
        if "real_weights" in item.keywords:
            item.add_marker(skip)


def shared_file(relative: str) -> Path:
    """A file from the team's ../shared folder, or skip the test when it is not there."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} not found: tests that read the team's shared data need ../shared beside the project")
    return path


@pytest.fixture(scope="session")
def parity():
    return torch.load(shared_file("fixtures/stylegan2_parity_64.pt"), weights_only=True)


@pytest.fixture(scope="session")
def tiny_generator():
    """32 px, style_dim 32, 8 W+ rows; seeded. Treat as read-only."""
    return random_generator(seed=0)


@pytest.fixture
def windowed_scene():
    """(G, target, masks): a 64 px generator (style_dim 32), a noise target [1, 3, 64, 64] in [-1, 1] and 3 masks
    [3, 1, 64, 64], two small segments with windows of their own and the rest. Seeded."""
    G = random_generator(64, 32, 2, seed=0)
    target = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    masks = torch.zeros(3, 1, 64, 64)
    masks[0, :, 10:20, 10:25] = 1
    masks[1, :, 30:40, 30:50] = 1
    masks[2] = 1 - masks[0] - masks[1]
    return G, target, masks


@contextlib.contextmanager
def held_by_a_long_job(session):
    """``session`` held by a long job (`Session.acting` with ``wait``) in another thread until the block ends."""
    inside, release = threading.Event(), threading.Event()

    def long_job():
        with session.acting(wait=True):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=long_job)
    thread.start()
    inside.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)


def write_hf_cache_file(cache_dir: Path, repo: str, filename: str, data: bytes, revision: str = "a" * 40) -> Path:
    """Place a file in the Hugging Face cache layout, as hf_hub_download would leave it."""
    repo_dir = cache_dir / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    path = repo_dir / "snapshots" / revision / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def unpinned_registry(monkeypatch):
    """The real registry with every Hub entry's pinned digests removed, so small stand-in files placed in an HF
    cache or CHUNKY_WEIGHTS_DIR go through the real loading code (the digests themselves are tested with the
    real registry)."""
    import dataclasses

    import chunky.weights as weights

    real = weights.registry()
    stand_ins = {
        name: dataclasses.replace(
            entry, sha256="", mirrors=tuple(dataclasses.replace(m, sha256="") for m in entry.mirrors)
        )
        if entry.mirrors and not entry.urls
        else entry
        for name, entry in real.items()
    }
    monkeypatch.setattr(weights, "registry", lambda: stand_ins)
    return stand_ins
