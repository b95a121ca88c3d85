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


def test_from_pretrained_reads_first_mirror_from_hf_cache_offline(tmp_path, tiny_generator):
    write_hf_cache_file(tmp_path, "AIRI-Institute/HairFastGAN", "pretrained_models/StyleGAN/ffhq.pt", checkpoint_bytes(tiny_generator))
    G = Generator.from_pretrained(NAME, cache_dir=tmp_path)
    ws = torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(0))
    assert torch.equal(G.synthesis(ws), tiny_generator.synthesis(ws))


def test_falls_back_to_second_mirror(tmp_path, tiny_generator):
    path = write_hf_cache_file(tmp_path, "Awesimo/jojogan", "stylegan2-ffhq-config-f.pt", checkpoint_bytes(tiny_generator))
    assert weights.fetch(NAME, cache_dir=tmp_path).resolve() == path.resolve()


def test_offline_without_file_names_file_mirrors_and_manual_fix(tmp_path):
    with pytest.raises(WeightsUnavailableError) as info:
        weights.fetch(NAME, cache_dir=tmp_path)
    message = str(info.value)
    for part in (NAME, "HF_HUB_OFFLINE is set", "AIRI-Institute/HairFastGAN/pretrained_models/StyleGAN/ffhq.pt",
                 "Awesimo/jojogan/stylegan2-ffhq-config-f.pt", "CHUNKY_WEIGHTS_DIR=<folder>", "https://huggingface.co/"):
        assert part in message


def test_weights_dir_override(tmp_path, monkeypatch, tiny_generator):
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
