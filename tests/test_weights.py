import hashlib
import io

import pytest
import torch

import chunky.weights as weights
from chunky.errors import ChecksumError, InvalidInputError, WeightsUnavailableError
from chunky.generator import Generator
from tests.conftest import write_hf_cache_file

NAME = "stylegan2-ffhq-1024.pt"


def checkpoint_bytes(generator) -> bytes:
    buffer = io.BytesIO()
    torch.save({"g_ema": generator.state_dict(), "latent_avg": generator.w_avg[0]}, buffer)
    return buffer.getvalue()


def test_registry_lists_the_default_generator_with_both_mirrors():
    entry = weights.lookup(NAME)
    assert [(m.repo, m.file) for m in entry.mirrors] == [
        ("AIRI-Institute/HairFastGAN", "pretrained_models/StyleGAN/ffhq.pt"),
        ("Awesimo/jojogan", "stylegan2-ffhq-config-f.pt"),
    ]
    assert "non-commercial" in entry.license.lower()
    with pytest.raises(InvalidInputError, match="No weight file named 'nope'"):
        weights.lookup("nope")


def test_from_pretrained_reads_first_mirror_from_hf_cache_offline(tmp_path, tiny_generator, unpinned_registry):
    write_hf_cache_file(
        tmp_path, "AIRI-Institute/HairFastGAN", "pretrained_models/StyleGAN/ffhq.pt", checkpoint_bytes(tiny_generator)
    )
    G = Generator.from_pretrained(NAME, cache_dir=tmp_path)
    ws = torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(G.synthesis(ws), tiny_generator.synthesis(ws))


def test_falls_back_to_second_mirror(tmp_path, tiny_generator, unpinned_registry):
    path = write_hf_cache_file(
        tmp_path, "Awesimo/jojogan", "stylegan2-ffhq-config-f.pt", checkpoint_bytes(tiny_generator)
    )
    assert weights.fetch(NAME, cache_dir=tmp_path).resolve() == path.resolve()


def test_offline_without_file_names_file_mirrors_and_manual_fix(tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        weights.fetch(NAME, cache_dir=tmp_path)
    message = str(info.value)
    for part in (
        NAME,
        "HF_HUB_OFFLINE is set",
        "AIRI-Institute/HairFastGAN/pretrained_models/StyleGAN/ffhq.pt",
        "Awesimo/jojogan/stylegan2-ffhq-config-f.pt",
        "CHUNKY_WEIGHTS_DIR=<folder>",
        "https://huggingface.co/",
    ):
        assert part in message


def test_weights_dir_override(tmp_path, monkeypatch, tiny_generator, unpinned_registry):
    monkeypatch.setenv("CHUNKY_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=f"CHUNKY_WEIGHTS_DIR is set to .* but '{NAME}' is not in it"):
        weights.fetch(NAME)
    (tmp_path / NAME).write_bytes(checkpoint_bytes(tiny_generator))
    assert weights.fetch(NAME) == tmp_path / NAME
    assert Generator.from_pretrained(NAME).n_latent == tiny_generator.n_latent


def test_pinned_sha256_is_enforced(tmp_path, monkeypatch):
    path = tmp_path / NAME
    path.write_bytes(b"not the generator")
    entry = weights.lookup(NAME)
    monkeypatch.setenv("CHUNKY_WEIGHTS_DIR", str(tmp_path))
    pinned = {NAME: weights.WeightFile(NAME, entry.description, entry.license, weights.sha256_of(path), entry.mirrors)}
    monkeypatch.setattr(weights, "registry", lambda: pinned)
    assert weights.fetch(NAME) == path
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="delete it and fetch again"):
        weights.fetch(NAME)


@pytest.fixture
def web(tmp_path, monkeypatch):
    """A local web server for tmp_path/site (it counts requests), with downloads going to tmp_path/downloads
    and the offline switch off (the server is on this machine)."""
    import functools
    import http.server
    import threading

    site = tmp_path / "site"
    site.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("CHUNKY_DOWNLOADS_DIR", str(tmp_path / "downloads"))
    yield site, f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def url_entry(data: bytes, *urls: str) -> weights.WeightFile:
    return weights.WeightFile("direction.npy", "a test file", "MIT", hashlib.sha256(data).hexdigest(), (), urls)


def test_url_source_skips_missing_and_wrong_bytes_then_keeps_the_verified_file(web, tmp_path, monkeypatch):
    site, base, requests = web
    (site / "good.npy").write_bytes(b"the published bytes")
    (site / "other.npy").write_bytes(b"an LFS pointer or a changed file")
    entry = url_entry(b"the published bytes", f"{base}/missing.npy", f"{base}/other.npy", f"{base}/good.npy")
    path = weights.fetch_entry(entry)
    assert path == tmp_path / "downloads" / "direction.npy" and path.read_bytes() == b"the published bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["direction.npy"]  # no partial files
    assert requests == ["/missing.npy", "/other.npy", "/good.npy"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.fetch_entry(entry) == path and len(requests) == 3  # kept: offline, no request
    path.write_bytes(b"damaged")
    with pytest.raises(WeightsUnavailableError, match="offline"):
        weights.fetch_entry(entry)
    assert not path.exists()  # a copy with the wrong digest is never returned


def test_url_failures_are_all_named_and_leave_nothing(web, tmp_path):
    site, base, _ = web
    (site / "other.npy").write_bytes(b"wrong")
    with pytest.raises(WeightsUnavailableError) as info:
        weights.fetch_entry(url_entry(b"right", f"{base}/missing.npy", f"{base}/other.npy"))
    message = str(info.value)
    assert "missing.npy: HTTPError" in message and "is not the pinned" in message and "CHUNKY_WEIGHTS_DIR" in message
    assert list((tmp_path / "downloads").iterdir()) == []


def test_disk_full_during_a_download_leaves_no_partial_file(web, tmp_path, monkeypatch):
    import errno
    import tempfile

    site, base, _ = web
    (site / "good.npy").write_bytes(b"x" * 10000)
    real = tempfile.NamedTemporaryFile

    def full_disk(*args, **kwargs):
        handle = real(*args, **kwargs)
        handle.write = lambda data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
        return handle

    monkeypatch.setattr(weights.tempfile, "NamedTemporaryFile", full_disk)
    with pytest.raises(WeightsUnavailableError, match="No space left on device"):
        weights.fetch_entry(url_entry(b"x" * 10000, f"{base}/good.npy"))
    assert list((tmp_path / "downloads").iterdir()) == []


def test_urls_need_a_pinned_digest():
    with pytest.raises(InvalidInputError, match="no pinned sha256"):
        weights.WeightFile("x.npy", "", "", "", (), ("https://example.org/x.npy",))
    with pytest.raises(InvalidInputError, match="no mirrors, no urls and no bundled file"):
        weights.WeightFile("x.npy", "", "", "", ())
    with pytest.raises(InvalidInputError, match="no pinned sha256"):
        weights.WeightFile("x.pt", "", "", "", (), bundled="x.pt")


def test_the_bundled_small_model_loads_without_any_download_even_with_a_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "CHUNKY_WEIGHTS_DIR", str(tmp_path)
    )  # bundled files ignore the override: they ship with the code
    entry = weights.lookup("small-face-64.pt")
    path = weights.fetch("small-face-64.pt")
    assert path == weights.REGISTRY_PATH.parent / "small-face-64.pt"
    assert weights.sha256_of(path) == entry.sha256
    assert "bundled, no download" in weights.describe()
    G = Generator.from_pretrained("small-face-64.pt")
    assert (G.size, G.style_dim) == (64, 128)


def test_a_bundled_file_with_the_wrong_digest_is_refused(tmp_path, monkeypatch):
    entry = weights.lookup("small-face-64.pt")
    wrong = weights.WeightFile(entry.name, entry.description, entry.license, "0" * 64, (), bundled=entry.bundled)
    monkeypatch.setattr(weights, "registry", lambda: {entry.name: wrong})
    with pytest.raises(ChecksumError, match="small-face-64.pt"):
        weights.fetch(entry.name)
    missing = weights.WeightFile("gone.pt", "a file", "", "0" * 64, (), bundled="gone.pt")
    monkeypatch.setattr(weights, "registry", lambda: {"gone.pt": missing})
    with pytest.raises(WeightsUnavailableError, match="git checkout -- weights/"):
        weights.fetch("gone.pt")


def test_every_download_is_pinned_and_a_wrong_file_is_refused_with_both_digests_and_the_fix(
    tmp_path, monkeypatch, tiny_generator
):
    for entry in weights.registry().values():
        assert entry.digests(), f"{entry.name} has no pinned sha256"
    ffhq = weights.lookup(NAME)
    assert [m.sha256[:12] for m in ffhq.mirrors] == ["48a146c50211", "bae494ef77e3"]  # one digest per mirror's bytes
    path = write_hf_cache_file(
        tmp_path, "AIRI-Institute/HairFastGAN", "pretrained_models/StyleGAN/ffhq.pt", checkpoint_bytes(tiny_generator)
    )
    with pytest.raises(ChecksumError) as info:
        weights.fetch(NAME, cache_dir=tmp_path)
    message = str(info.value)
    assert weights.sha256_of(path) in message and ffhq.mirrors[0].sha256 in message
    assert "delete it and fetch again" in message and NAME in message
    monkeypatch.setenv("CHUNKY_WEIGHTS_DIR", str(tmp_path))  # a hand-placed copy may be either mirror's file
    (tmp_path / NAME).write_bytes(b"neither")
    with pytest.raises(ChecksumError, match="48a146c5.* or bae494ef"):
        weights.fetch(NAME)


def test_when_the_app_found_the_hub_unreachable_the_message_says_so_not_that_a_variable_was_set(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_hub_unreachable", False)
    weights.work_offline()  # what editor_from_environment does after a failed Hub check
    with pytest.raises(WeightsUnavailableError) as info:
        weights.fetch(NAME, cache_dir=tmp_path)
    assert "the Hugging Face Hub could not be reached" in str(info.value)
    assert "HF_HUB_OFFLINE is set" not in str(info.value)
