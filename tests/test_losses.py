"""Masked LPIPS in context, the normalised latent regulariser, and the LPIPS backbones from the registry."""

import pytest
import torch

from chunky.errors import CheckpointError, WeightsUnavailableError
from chunky.losses import (
    LPIPS_BACKBONES,
    build_perceptual,
    latent_regulariser,
    latent_spread,
    lpips_features,
    lpips_map,
    masked_mean,
    prepared_for,
    segment_losses,
)


@pytest.fixture(scope="module")
def perceptual():
    return build_perceptual("lpips-alex", pretrained_backbone=False)


def test_lpips_judges_the_render_pasted_into_the_photo(perceptual):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    renders = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    masks = torch.zeros(1, 1, 64, 64)
    masks[..., 20:30, 24:40] = 1
    pasted = target.clone()  # by hand: the mask grown by 3 px on every side (a 7x7 max filter) holds the render
    pasted[..., 17:33, 21:43] = renders[..., 17:33, 21:43]
    expected = masked_mean(
        lpips_map(perceptual, lpips_features(perceptual, pasted), lpips_features(perceptual, target), (64, 64)), masks
    )
    value = segment_losses(renders, target, masks, perceptual=perceptual, pixel_weight=0.0)["lpips"]
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-5)
    # pixels outside the grown mask do not matter any more (the leaky variant saw them)
    changed = renders.clone()
    changed[..., :10, :] = 5.0
    torch.testing.assert_close(
        segment_losses(changed, target, masks, perceptual=perceptual, pixel_weight=0.0)["lpips"], value, atol=0, rtol=0
    )


def lpips_and_gradient(perceptual, images, target, monkeypatch, *, prepared: bool):
    """The LPIPS map of ``images`` [N, 3, H, W] against ``target`` under bf16 autocast, and its gradient to them;
    with ``prepared`` False, every convolution casts and converts its weights itself (no `prepared_for` copy)."""
    if not prepared:
        monkeypatch.setattr("chunky.losses.prepared_for", lambda module, inputs: module)
    images = images.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = lpips_features(perceptual, images)
        distance = lpips_map(perceptual, features, lpips_features(perceptual, target), images.shape[-2:])
    distance.float().square().sum().backward()
    monkeypatch.undo()
    return distance, images.grad


@pytest.mark.parametrize("channels_last", [False, True])
def test_lpips_weights_prepared_once_give_the_same_losses_and_gradients(perceptual, monkeypatch, channels_last):
    """Under autocast (and for channels-last renders, as the generator's are) LPIPS runs a copy of its backbone
    with the weights already cast and laid out (`prepared_for`): bit for bit what the casts on every call gave,
    kept between calls, and made again when a weight changes in place."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    target = torch.rand(1, 3, 48, 48, generator=g) * 2 - 1
    expected = lpips_and_gradient(perceptual, images, target, monkeypatch, prepared=False)
    actual = lpips_and_gradient(perceptual, images, target, monkeypatch, prepared=True)
    assert all(torch.equal(a, e) for a, e in zip(actual, expected))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        copy = prepared_for(perceptual, images)
        assert copy is not perceptual and prepared_for(perceptual, images) is copy  # kept
        assert copy.net.slice1[0].weight.dtype == torch.bfloat16
        assert copy.net.slice1[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert prepared_for(perceptual, images.contiguous()) is perceptual  # plain float32: nothing to prepare
    layer = perceptual.net.slice1[0]
    with torch.no_grad():
        layer.weight.mul_(2)
    try:
        doubled = lpips_and_gradient(perceptual, images, target, monkeypatch, prepared=True)
        assert not torch.equal(doubled[0], actual[0])
        expected = lpips_and_gradient(perceptual, images, target, monkeypatch, prepared=False)
        assert all(torch.equal(a, e) for a, e in zip(doubled, expected))
    finally:
        with torch.no_grad():
            layer.weight.div_(2)


def test_regulariser_value_and_gradient_by_hand():
    center = torch.tensor([[1.0, 2.0, 3.0]])
    codes = torch.tensor([[1.0, 2.0, 3.0], [3.0, 0.0, 4.0]], requires_grad=True)
    value = latent_regulariser(codes, center, spread=4.0)
    # segment 1: ((2^2 + 2^2 + 1^2) / 3) / 4 = 0.75
    torch.testing.assert_close(value, torch.tensor([0.0, 0.75]))
    (10 * value.sum()).backward()
    # d/dc of 10 * mean((c - m)^2) / 4 = 10 * 2 (c - m) / (3 * 4)
    torch.testing.assert_close(codes.grad, torch.tensor([[0.0, 0.0, 0.0], [10 / 3, -10 / 3, 10 / 6]]))
    # W+ [K, L, D] averages over rows and dimensions; S (a list of layers) over all channels
    plus = torch.stack([codes.detach(), codes.detach() + 1])  # [K=2, L=2, D=3]
    torch.testing.assert_close(latent_regulariser(plus, torch.zeros(3), 2.0), plus.square().flatten(1).mean(1) / 2)
    styles = [torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0]])]
    torch.testing.assert_close(
        latent_regulariser(styles, [torch.zeros(1, 2), torch.zeros(1, 1)], 3.0), torch.tensor([(1 + 1 + 4) / 3 / 3])
    )


class ScaledMapping:  # w = 3 z + 1: W's total variance is 9 per dimension
    style_dim, n_latent = 16, 6
    w_avg = torch.ones(1, 16)

    def mapping(self, z):
        return 3 * z + 1


def test_latent_spread_is_the_total_variance_of_the_codes():
    G = ScaledMapping()
    w_spread = latent_spread(G, "w")
    assert abs(w_spread / (9 * 16) - 1) < 0.03, w_spread  # sampled from 10 000 seeded z
    assert latent_spread(G, "w+") == pytest.approx(6 * w_spread, rel=1e-12)


def test_lpips_backbone_loads_through_the_registry(tmp_path, monkeypatch):
    from chunky.compat import ensure_torchvision

    ensure_torchvision()
    import torchvision

    reference = torchvision.models.alexnet(weights=None)  # real architecture, random weights, saved to disk
    path = tmp_path / LPIPS_BACKBONES["alex"]
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr("chunky.weights.lookup", lambda name: _pinned_to(name, path))
    monkeypatch.setenv("CHUNKY_WEIGHTS_DIR", str(tmp_path))
    model = build_perceptual("lpips-alex")
    assert torch.equal(model.net.slice1[0].weight, reference.features[0].weight)
    assert torch.equal(getattr(model.net.slice5, "10").bias, reference.features[10].bias)
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not torchvision's ImageNet backbone"):
        build_perceptual("lpips-alex")


def _pinned_to(name, path):
    """The registry entry, pinned to the stand-in file's digest (it cannot have the real one)."""
    import dataclasses

    from chunky.weights import registry, sha256_of

    return dataclasses.replace(registry()[name], sha256=sha256_of(path))


def test_lpips_backbone_offline_without_a_file_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNKY_DOWNLOADS_DIR", str(tmp_path))  # empty; the Hub and URLs are offline in tests
    with pytest.raises(WeightsUnavailableError) as error:
        build_perceptual("lpips-vgg")
    message = str(error.value)
    assert "vgg16-397923af.pth" in message and "CHUNKY_WEIGHTS_DIR" in message and "offline" in message
