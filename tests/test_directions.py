import hashlib
import logging
import shutil

import numpy as np
import pytest
import torch

from chunky.directions import (
    GANSPACE_RECIPES,
    Direction,
    as_w_plus,
    factor_directions,
    ganspace_directions,
    load_direction_file,
    load_direction_folder,
    pca_directions,
    published_directions,
)
from chunky.editing import combined_offset
from chunky.errors import InvalidInputError
from chunky.weights import registry
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def directions(tiny_generator):
    return pca_directions(tiny_generator, count=3)


def test_pca_directions_are_ordered_orthogonal_components(tiny_generator, directions):
    assert [d.name for d in directions] == ["Component 1", "Component 2", "Component 3"]
    rows = torch.stack([d.vector[0] for d in directions]).double()
    norms = rows.norm(dim=1)
    assert norms[0] >= norms[1] >= norms[2] > 0  # scaled by the standard deviation along each
    cosines = (rows / norms[:, None]) @ (rows / norms[:, None]).T
    torch.testing.assert_close(cosines, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert all(torch.equal(d.vector[0], d.vector[-1]) for d in directions)  # every layer


def test_factor_directions_are_the_closed_form_factors_of_the_coarse_modulations(tiny_generator):
    G = tiny_generator
    factors = factor_directions(G, count=3, rows=4)
    assert [d.name for d in factors] == ["Factor 1", "Factor 2", "Factor 3"]
    assert all(d.vector[4:].abs().max() == 0 and d.vector[:4].abs().min() > 0 for d in factors)  # coarse rows only
    units = torch.stack([d.vector[0] / d.vector[0].norm() for d in factors]).double()
    torch.testing.assert_close(units @ units.T, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    A = torch.cat(
        [layer.modulation.weight * layer.modulation.scale for row, layer in G.modulated_layers(None) if row < 4]
    ).double()
    gains = (A @ units.T).norm(dim=0)  # how much each factor moves the coarse styles
    assert gains[0] >= gains[1] >= gains[2]
    random_units = torch.nn.functional.normalize(
        torch.randn(100, G.style_dim, generator=torch.Generator().manual_seed(0)).double(), dim=1
    )
    assert (A @ random_units.T).norm(dim=0).max() <= gains[0] + 1e-9  # the top factor moves them most


def test_published_direction_formats_read_for_the_ffhq_shape():
    chunkmogrify = load_direction_file(shared_file("directions/chunkmogrify/smile_styleganv2.npy"), FFHQShape())
    assert chunkmogrify.vector.shape == (18, 512) and chunkmogrify.name == "smile styleganv2"
    w_only = torch.load(shared_file("directions/e4e/e4e_interfacegan_age.pt"), map_location="cpu", weights_only=True)
    assert as_w_plus(w_only, FFHQShape()).shape == (18, 512)


def test_direction_files_that_do_not_fit_are_skipped(tmp_path, tiny_generator):
    np.save(tmp_path / "good.npy", np.ones((tiny_generator.n_latent, tiny_generator.style_dim), np.float32))
    np.save(tmp_path / "wrong.npy", np.ones((18, 512), np.float32))
    (tmp_path / "junk.pt").write_bytes(b"not a tensor")
    names = [d.name for d in load_direction_folder(tmp_path, tiny_generator)]
    assert names == ["good"]
    with pytest.raises(InvalidInputError, match=r"needs \[32\] or \[8, 32\]"):
        load_direction_file(tmp_path / "wrong.npy", tiny_generator)


class FFHQShape:  # reading published files only needs the generator's shapes
    style_dim, n_latent = 512, 18
    w_avg = torch.zeros(1, 512)


def test_published_formats_give_the_offsets_computed_by_hand():
    # InterFaceGAN (e4e): a [1, 512] W direction, added to every layer times the strength
    age = torch.load(shared_file("directions/e4e/e4e_interfacegan_age.pt"), map_location="cpu", weights_only=True)
    offset = combined_offset([Direction("age", as_w_plus(age.float(), FFHQShape()))], {"age": 1.5}, FFHQShape())
    torch.testing.assert_close(offset, 1.5 * age.float().expand(18, -1))
    # Chunkmogrify: an [18, 512] W+ direction used as it is
    path = shared_file("directions/chunkmogrify/smile_styleganv2.npy")
    smile = load_direction_file(path, FFHQShape())
    torch.testing.assert_close(-2.0 * smile.vector, -2.0 * torch.from_numpy(np.load(path)).float())
    # GANSpace: the published recipe sets the coordinate along its component (tested below)
    pca = torch.load(shared_file("directions/e4e/e4e_ganspace_ffhq_pca.pt"), map_location="cpu", weights_only=True)
    by_name = {d.name: d for d in ganspace_directions(pca, FFHQShape())}
    assert by_name["white hair"].limits == (-1.0, 1.0) and set(GANSPACE_RECIPES) == set(by_name)


def test_a_ganspace_file_in_the_directions_folder_yields_its_recipes(tmp_path, tiny_generator):
    G = tiny_generator
    pca = {"comp": torch.randn(60, 1, G.style_dim), "std": torch.rand(60), "mean": torch.zeros(1, G.style_dim)}
    torch.save(pca, tmp_path / "pca.pt")
    names = {d.name for d in load_direction_folder(tmp_path, G)}
    # only recipes whose layers exist in an 8-row W+ fit
    assert names == {"eye openness", "smile", "wrinkles", "bald", "head angle up"}


def published_direction_files() -> list[str]:
    """Registry names of the published direction files (the other URL entries are LPIPS backbones)."""
    return [name for name in registry() if name.startswith(("e4e-", "chunkmogrify-"))]


def shared_direction(registry_name: str):
    """The ../shared copy of a published direction file, by its registry name."""
    if registry_name.startswith("e4e-"):
        return shared_file("directions/e4e/" + registry_name.replace("-", "_"))
    stem, suffix = registry_name.removeprefix("chunkmogrify-").rsplit(".", 1)
    return shared_file(f"directions/chunkmogrify/{stem.replace('-', '_')}.{suffix}")


@pytest.fixture
def published_downloads(tmp_path, monkeypatch):
    """The published direction files placed where a first download would have left them."""
    monkeypatch.setenv("CHUNKY_DOWNLOADS_DIR", str(tmp_path))
    for name in published_direction_files():
        shutil.copyfile(shared_direction(name), tmp_path / name)
    return tmp_path


def test_published_directions_load_offline_with_their_pinned_digests(published_downloads):
    found = published_directions(FFHQShape(), "stylegan2-ffhq-1024.pt")
    by_name = {d.name: d for d in found}
    assert len(by_name) == len(found) == 3 + len(GANSPACE_RECIPES) + 17  # names are unique
    assert {d.group for d in found} == {"InterFaceGAN", "GANSpace", "ChunkyGAN authors"}

    # the authors' smile moves W+ rows [0, 5) by the file's rows
    smile = np.load(shared_direction("chunkmogrify-smile-styleganv2.npy"))
    expected = torch.zeros(18, 512)
    expected[:5] = torch.from_numpy(smile[:5]).float()
    torch.testing.assert_close(by_name["smile"].vector, expected)
    assert by_name["smile"].limits == (-5.0, 5.0)
    # one file, two directions: light on rows [5, 11) and eye colour on row 14
    light = torch.from_numpy(np.load(shared_direction("chunkmogrify-light.npy"))).float()[0]
    assert (
        torch.equal(by_name["eye colour"].vector[14], light) and by_name["eye colour"].vector[[13, 15]].abs().max() == 0
    )
    assert (
        torch.equal(by_name["light"].vector[5:11], light.expand(6, -1))
        and by_name["light"].vector[11:].abs().max() == 0
    )
    # InterFaceGAN pose is a W+ file: used row by row
    pose = torch.load(shared_direction("e4e-interfacegan-pose.pt"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(by_name["pose (InterFaceGAN)"].vector, pose[0].float())
    pca = torch.load(shared_direction("e4e-ganspace-ffhq-pca.pt"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(by_name["white hair (GANSpace)"].vector[8], pca["std"][57] * pca["comp"][57, 0])
    assert by_name["white hair (GANSpace)"].setpoint.strength == -24.0


def test_published_directions_only_for_their_generator(published_downloads):
    assert published_directions(FFHQShape(), "some-other-generator.pt") == []


def test_unavailable_published_directions_leave_a_warning_not_an_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CHUNKY_DOWNLOADS_DIR", str(tmp_path))  # empty, and the Hub is offline in tests
    with caplog.at_level(logging.WARNING):
        assert published_directions(FFHQShape(), "stylegan2-ffhq-1024.pt") == []
    assert "published directions are not available" in caplog.text and "offline" in caplog.text
    assert len([r for r in caplog.records if "not available" in r.message]) == 1  # it stopped at the first file


def test_published_files_are_pinned_by_commit_and_digest():
    for name in published_direction_files():
        entry = registry()[name]
        data = shared_direction(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256, name
        for url in entry.urls:
            assert url.startswith("https://") and any(len(part) == 40 for part in url.split("/")), url


def published_pca():
    pca = torch.load(shared_file("directions/e4e/e4e_ganspace_ffhq_pca.pt"), map_location="cpu", weights_only=True)
    return pca, FFHQShape()


def synthetic_pca():
    """A GANSpace-format PCA of an 18-row, 512-d W with orthonormal components, like the published file."""
    g = torch.Generator().manual_seed(0)
    comp = torch.linalg.qr(torch.randn(512, 80, generator=g))[0].T  # [80, 512] orthonormal rows
    pca = {"comp": comp[:, None], "std": torch.rand(80, generator=g) + 0.3, "mean": torch.randn(1, 512, generator=g)}
    return pca, FFHQShape()


@pytest.mark.parametrize("source", [published_pca, synthetic_pca])
def test_ganspace_positive_end_reaches_the_published_coordinate(source):
    pca, G = source()
    by_name = {d.name: d for d in ganspace_directions(pca, G)}
    comp = lambda k: pca["comp"][k].reshape(-1).float()
    coordinate = lambda w, k, row: float((w[0, row] - pca["mean"].reshape(-1)) @ comp(k) / pca["std"][k])
    g = torch.Generator().manual_seed(1)
    start = pca["mean"].reshape(1, 1, -1).float() + 0.3 * torch.randn(1, 18, 512, generator=g)  # some code
    for name, k, rows, goal in (("smile", 46, [4], -20.0), ("white hair", 57, [7, 8, 9], -24.0)):
        d = by_name[name]
        top = start + combined_offset([d], {name: d.limits[1]}, G, start)
        for row in rows:
            assert coordinate(top, k, row) == pytest.approx(goal, abs=1e-3)
        assert torch.equal(top[:, : rows[0]], start[:, : rows[0]]) and torch.equal(
            top[:, rows[-1] + 1 :], start[:, rows[-1] + 1 :]
        )
        bottom = start + combined_offset([d], {name: d.limits[0]}, G, start)
        assert coordinate(bottom, k, rows[0]) == pytest.approx(-goal, abs=1e-3)  # the opposite end: -strength
        half = start + combined_offset([d], {name: 0.5}, G, start)
        middle = (coordinate(start, k, rows[0]) + goal) / 2
        assert coordinate(half, k, rows[0]) == pytest.approx(middle, abs=1e-3)
        assert combined_offset([d], {name: 0.0}, G, start).abs().max() == 0  # at 0 nothing moves


def test_ganspace_from_the_mean_code_is_exactly_the_published_edit():
    pca, G = synthetic_pca()
    smile = {d.name: d for d in ganspace_directions(pca, G)}["smile"]
    mean = pca["mean"].reshape(1, 1, -1).expand(1, 18, -1)
    offset = combined_offset([smile], {"smile": 1.0}, G, mean)
    expected = torch.zeros(1, 18, 512)  # the published edit: (strength - 0) * comp * std on rows [4, 5)
    expected[0, 4] = -20.0 * pca["comp"][46, 0] * pca["std"][46]
    torch.testing.assert_close(offset, expected, atol=1e-5, rtol=0)
