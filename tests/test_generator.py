import copy
import json
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from chunky.bench import per_sample_weights, weights_prepared_every_call
from chunky.device import autocast
from chunky.errors import CheckpointError, InvalidInputError
from chunky.generator import (
    Generator,
    Window,
    _PhaseTransposedConv,
    config_f_channels,
    is_channels_last,
    phase_kernels,
    random_generator,
    window_margin,
)
from tests.conftest import shared_file


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


# ---------------------------------------------------------------------------------- parity
def test_parity_with_reference_implementation(parity):
    G = Generator.from_checkpoint(parity["checkpoint"])
    inputs, outputs = parity["inputs"], parity["outputs"]
    assert (G.size, G.style_dim, G.n_latent) == (64, 64, parity["n_latent"])
    with torch.no_grad():
        w = G.mapping(inputs["z"])
        w_truncated = G.mapping(
            inputs["z"], truncation_psi=inputs["truncation"], truncation_latent=inputs["truncation_latent"]
        )
        k = inputs["inject_index"]
        w2 = G.mapping(inputs["z2"])
        mixed = torch.cat([w[:, None].expand(-1, k, -1), w2[:, None].expand(-1, G.n_latent - k, -1)], dim=1)
        ours = {
            "w_from_z": w,
            "img_from_z": G.synthesis(w),
            "img_from_w": G.synthesis(outputs["w_from_z"]),
            "img_from_w_plus": G.synthesis(inputs["w_plus"]),
            "img_truncated": G.synthesis(w_truncated),
            "img_style_mix": G.synthesis(mixed),
        }
    for name, expected in outputs.items():
        assert relative_error(ours[name], expected) < 1e-4, name


def test_bf16_stays_close_to_fp32_on_parity_checkpoint(parity):
    # The parity images are unclamped (mean |x| ~ 9-24 with random weights), so the 2e-2 bound is taken
    # relative to the image's mean magnitude, i.e. what it is for an image in [-1, 1].
    G = Generator.from_checkpoint(parity["checkpoint"])
    for ws in (parity["outputs"]["w_from_z"], parity["inputs"]["w_plus"]):
        with torch.no_grad():
            fp32 = G.synthesis(ws)
            with autocast("bf16"):
                bf16 = G.synthesis(ws).float()
        assert bf16.dtype == torch.float32
        assert (fp32 - bf16).abs().mean() / fp32.abs().mean() < 2e-2
        assert not torch.equal(fp32, bf16)  # bf16 really ran


@pytest.mark.parametrize("config", ["ffhq1024_config_f", "ffhq512_config_f", "ffhq256_config_f"])
def test_loads_real_ffhq_checkpoint_schemas_strictly(config):
    schema = json.loads(shared_file("fixtures/stylegan2_rosinality_schemas.json").read_text())[config]
    rng = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=rng) for key, shape in schema["state_dict"]}
    G = Generator.from_checkpoint({"g_ema": state, "latent_avg": torch.zeros(512)})
    constructor = schema["constructor"]
    assert G.size == constructor["size"] and G.style_dim == constructor["style_dim"] and G.n_mlp == constructor["n_mlp"]
    assert G.n_latent == schema["n_latent"]
    assert G.num_noises == schema["num_layers"]
    assert G.channels == config_f_channels(constructor["size"], constructor["channel_multiplier"])
    assert sum(p.numel() for p in G.parameters()) == schema["num_parameters"]
    assert G.num_styles == 3 * int(math.log2(G.size)) - 4
    assert torch.equal(G.convs[0].conv.blur.kernel, state["convs.0.conv.blur.kernel"])


# --------------------------------------------------------------------------------- loading
def test_checkpoint_round_trip_through_file(tmp_path, tiny_generator):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": tiny_generator.state_dict(), "latent_avg": tiny_generator.w_avg[0]}, path)
    G = Generator.from_checkpoint(path)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(3))
    assert torch.equal(G.synthesis(ws), tiny_generator.synthesis(ws))
    assert torch.equal(G.w_avg, tiny_generator.w_avg)
    assert not any(p.requires_grad for p in G.parameters())


def test_bare_state_dict_loads_and_w_avg_falls_back_to_mean_w(tiny_generator):
    G = Generator.from_checkpoint(tiny_generator.state_dict())
    assert torch.allclose(G.w_avg, G.mean_w(), atol=1e-6)


def test_missing_key_is_named(tiny_generator):
    state = dict(tiny_generator.state_dict())
    del state["convs.1.noise.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys \(e\.g\. convs\.1\.noise\.weight\)"):
        Generator.from_checkpoint({"g_ema": state})


def test_wrong_shape_is_named(tiny_generator):
    state = dict(tiny_generator.state_dict())
    state["to_rgbs.0.bias"] = torch.zeros(1, 4, 1, 1)
    with pytest.raises(CheckpointError, match=r"to_rgbs\.0\.bias: file \(1, 4, 1, 1\) vs model \(1, 3, 1, 1\)"):
        Generator.from_checkpoint(state)


def test_unexpected_key_is_named(tiny_generator):
    state = dict(tiny_generator.state_dict(), **{"extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"unexpected keys \(e\.g\. extra\.weight\)"):
        Generator.from_checkpoint(state)


def test_not_a_generator(tmp_path):
    with pytest.raises(CheckpointError, match="Not a StyleGAN2 generator checkpoint.*'model'"):
        Generator.from_checkpoint({"model": {"fc.weight": torch.zeros(2, 2)}})
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="Could not read .*notes.pt"):
        Generator.from_checkpoint(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        Generator.from_checkpoint(tmp_path / "absent.pt")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_crafted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"g_ema": _RunsCode(marker)}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        Generator.from_checkpoint(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------- synthesis
def test_w_is_broadcast_to_every_layer(tiny_generator):
    G = tiny_generator
    w = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(1))
    assert torch.equal(G.synthesis(w), G.synthesis(w[:, None].repeat(1, G.n_latent, 1)))


def test_each_w_plus_row_reaches_the_image(tiny_generator):
    G = tiny_generator
    ws = torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(2))
    base = G.synthesis(ws)
    for row in range(G.n_latent):
        moved = ws.clone()
        moved[0, row] += 1.0
        assert not torch.allclose(G.synthesis(moved), base), row


def test_resolution_limited_synthesis_is_the_skip_image_and_skips_higher_blocks(tiny_generator):
    G = tiny_generator
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(4))
    skips = {}
    hooks = [
        rgb.register_forward_hook(lambda m, i, out, b=b: skips.__setitem__(b, out)) for b, rgb in enumerate(G.to_rgbs)
    ]
    G.synthesis(ws)
    calls = []
    hooks += [conv.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, conv in enumerate(G.convs)]
    try:
        low = G.synthesis(ws, resolution=16)
    finally:
        for h in hooks:
            h.remove()
    assert low.shape == (2, 3, 16, 16)
    assert torch.equal(low, skips[1])
    assert calls == [0, 1, 2, 3]  # the 32 px block (convs 4, 5) never ran
    assert G.synthesis(ws, resolution=4).shape == (2, 3, 4, 4)
    for bad in (2, 12, 64):
        with pytest.raises(InvalidInputError, match="resolution must be a power of two in \\[4, 32\\]"):
            G.synthesis(ws, resolution=bad)


def test_style_space_round_trip_and_edit(tiny_generator):
    G = tiny_generator
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(5))
    styles = G.styles(ws)
    assert len(styles) == G.num_styles == 11
    assert [s.shape[1] for s in styles[:5]] == [16, 16, 16, 16, 16]
    assert torch.equal(G.synthesis_from_styles(styles), G.synthesis(ws))
    assert len(G.styles(ws, resolution=8)) == G.num_styles_at(8) == 5
    edited = [s.clone() for s in styles]
    edited[6][:, 3] += 2.0
    assert not torch.allclose(G.synthesis_from_styles(edited), G.synthesis(ws))
    with pytest.raises(InvalidInputError, match="styles must hold 11 tensors"):
        G.synthesis_from_styles(styles[:-1])


def test_shared_weight_formulation_matches_per_sample_weights(tiny_generator):
    # The textbook per-sample-weight modulated conv (grouped conv), batch 3 with different codes:
    # same images and same gradients to the codes.
    G = tiny_generator
    ws = torch.randn(3, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(6))

    def image_and_grad():
        codes = ws.clone().requires_grad_(True)
        image = G.synthesis(codes)
        (image * torch.linspace(-1, 1, image.numel()).reshape(image.shape)).sum().backward()
        return image.detach(), codes.grad

    fast_image, fast_grad = image_and_grad()
    with per_sample_weights():
        ref_image, ref_grad = image_and_grad()
    assert relative_error(fast_image, ref_image) < 1e-5
    assert relative_error(fast_grad, ref_grad) < 1e-4


def test_noise_modes(tiny_generator):
    G = tiny_generator
    ws = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(7))
    const = G.synthesis(ws, "const")
    assert not torch.allclose(G.synthesis(ws, "none"), const)
    a = G.synthesis(ws, "random", noise_generator=torch.Generator().manual_seed(1))
    b = G.synthesis(ws, "random", noise_generator=torch.Generator().manual_seed(1))
    c = G.synthesis(ws, "random", noise_generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    with pytest.raises(InvalidInputError, match="noise_generator"):
        G.synthesis(ws, "random")
    with pytest.raises(InvalidInputError, match="noise_mode must be one of"):
        G.synthesis(ws, "fixed")


def test_mapping_truncation_and_mean_w(tiny_generator):
    G = tiny_generator
    z = torch.randn(4, G.style_dim, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(G.mapping(z, truncation_psi=0.0), G.w_avg.expand(4, -1))
    t = torch.randn(1, G.style_dim)
    w = G.mapping(z)
    assert torch.allclose(G.mapping(z, 0.5, t), t + 0.5 * (w - t))
    assert torch.equal(G.mean_w(500, seed=1), G.mean_w(500, seed=1))
    assert not torch.equal(G.mean_w(500, seed=1), G.mean_w(500, seed=2))
    assert torch.allclose(
        G.mean_w(500, seed=1),
        G.mapping(torch.randn(500, G.style_dim, generator=torch.Generator().manual_seed(1))).mean(0, keepdim=True),
        atol=1e-4,
    )


def test_bad_latent_shapes_are_named(tiny_generator):
    G = tiny_generator
    with pytest.raises(InvalidInputError, match=r"ws must be W \[N, 32\] or W\+ \[N, 8, 32\], got \[1, 7, 32\]"):
        G.synthesis(torch.zeros(1, 7, 32))
    with pytest.raises(InvalidInputError, match=r"z must be \[N, 32\]"):
        G.mapping(torch.zeros(3, 5))


def test_random_generator_is_seeded():
    a, b, c = random_generator(seed=3), random_generator(seed=3), random_generator(seed=4)
    ws = torch.zeros(1, a.style_dim)
    assert torch.equal(a.synthesis(ws), b.synthesis(ws))
    assert not torch.allclose(a.synthesis(ws), c.synthesis(ws))
    with pytest.raises(InvalidInputError, match="power of two"):
        Generator(48, 8, 1, {4: 4, 8: 4, 16: 4, 32: 4})


@pytest.mark.parametrize(
    "size, coarse, top, left, height, width",
    [
        (64, 16, 2, 1, 12, 10),  # two blocks above the window's resolution
        (64, 32, 0, 8, 20, 24),  # one block; touches the top edge
        (128, 16, 3, 3, 10, 13),  # three blocks
    ],
)
def test_windowed_synthesis_matches_the_full_render_away_from_inner_edges(size, coarse, top, left, height, width):
    G = random_generator(size, 32, 2, seed=1)
    ws = torch.randn(2, G.n_latent, 32, generator=torch.Generator().manual_seed(0))
    window = Window(coarse, top, left, height, width)
    with torch.no_grad():
        full = G.synthesis(ws)
        part = G.synthesis(ws, window=window)
    s = size // coarse
    assert part.shape == (2, 3, height * s, width * s)
    expected = full[..., top * s : (top + height) * s, left * s : (left + width) * s]
    m = window_margin(int(math.log2(s)))
    y0, x0 = (0 if top == 0 else m), (0 if left == 0 else m)
    y1 = part.shape[-2] - (0 if top + height == coarse else m)
    x1 = part.shape[-1] - (0 if left + width == coarse else m)
    torch.testing.assert_close(
        part[..., y0:y1, x0:x1], expected[..., y0:y1, x0:x1], rtol=0, atol=1e-5 * full.abs().max().item()
    )
    assert (part - expected).abs().max() > 1e-3  # and the cut edges do differ: the window really is computed alone


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("trunk_px", [8, 16, 32])
def test_a_render_from_a_shared_trunk_is_the_full_render_and_its_gradient(precision, trunk_px):
    G = random_generator(64, 32, 2, seed=1)
    blocks_above = int(math.log2(64 // trunk_px))
    shared = G.n_latent - 2 * blocks_above - 1  # the W+ rows used only up to trunk_px
    ws = torch.randn(3, G.n_latent, 32, generator=torch.Generator().manual_seed(0))
    ws[:, :shared] = ws[:1, :shared]
    with torch.no_grad(), autocast(precision):
        trunk = G.trunk(G.styles(ws[:1]), trunk_px)
    for k in range(3):  # batch 1, as a CPU renders segments: the same kernels, so the same bits
        code = ws[k : k + 1].clone().requires_grad_(True)
        from_trunk = ws[k : k + 1].clone().requires_grad_(True)
        with autocast(precision):
            full = G.synthesis(code)
            part = G.synthesis(from_trunk, trunk=trunk)
        weights = torch.linspace(-1, 1, full.numel()).reshape(full.shape)
        (full.float() * weights).sum().backward()
        (part.float() * weights).sum().backward()
        assert torch.equal(part, full)
        assert torch.equal(from_trunk.grad[:, shared:], code.grad[:, shared:])
        assert from_trunk.grad[:, :shared].abs().max() == 0  # the trunk was rendered without gradients


def test_a_trunk_row_changed_changes_only_the_full_render(tiny_generator):
    G = tiny_generator
    ws = torch.randn(1, G.n_latent, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trunk = G.trunk(G.styles(ws), 8)
        changed = ws.clone()
        changed[:, 0] += 1  # the constant input's row: inside the trunk
        assert not torch.equal(G.synthesis(changed), G.synthesis(ws))
        assert torch.equal(G.synthesis(changed, trunk=trunk), G.synthesis(ws, trunk=trunk))


def test_a_trunk_with_a_window_matches_the_window_without_it():
    G = random_generator(64, 32, 2, seed=1)
    ws = torch.randn(2, G.n_latent, 32, generator=torch.Generator().manual_seed(0))
    ws[1, :5] = ws[0, :5]  # rows 0-4 feed only the layers up to 16 px
    window = Window(16, 2, 1, 12, 10)
    with torch.no_grad():
        trunk = G.trunk(G.styles(ws[:1]), 16)
        for k in range(2):
            assert torch.equal(
                G.synthesis(ws[k : k + 1], trunk=trunk, window=window), G.synthesis(ws[k : k + 1], window=window)
            )


def test_a_trunk_refuses_what_it_cannot_serve(tiny_generator):
    from chunky.generator import StyleMix

    G = tiny_generator
    ws = torch.randn(2, G.n_latent, 32, generator=torch.Generator().manual_seed(0))
    styles = G.styles(ws[:1])
    for resolution in (4, 32, 12):
        with pytest.raises(InvalidInputError, match="resolution"):
            G.trunk(styles, resolution)
    with pytest.raises(InvalidInputError, match="const"):
        G.trunk(styles, 8, noise_mode="random")
    trunk = G.trunk(styles, 16)
    with pytest.raises(InvalidInputError, match="leaves nothing to render at 16 px"):
        G.synthesis(ws[:1], resolution=16, trunk=trunk)
    with pytest.raises(InvalidInputError, match="starts inside a trunk"):
        G.synthesis(ws[:1], trunk=trunk, window=Window(8, 0, 0, 4, 4))
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, :, :16], masks[1, :, 16:] = 1, 1
    with pytest.raises(InvalidInputError, match="StyleMix"):
        G.synthesis(ws, trunk=trunk, mix=StyleMix(masks))


# ------------------------------------------------------------------------------ prepared weights
def image_and_grads(G, ws, precision="fp32", dtype=torch.float32):
    """Image, gradient to the codes and (when the weights train) to every modulated weight."""
    codes = ws.to(dtype).clone().requires_grad_(True)
    with autocast(precision):
        image = G.synthesis(codes)
    (image.double() * torch.linspace(-1, 1, image.numel(), dtype=torch.float64).reshape(image.shape)).sum().backward()
    weights = [layer.weight.grad for _, layer in G.modulated_layers(None)]
    return [image.detach(), codes.grad] + [g for g in weights if g is not None]


def assert_all_equal(actual, expected):
    assert len(actual) == len(expected)
    assert all(torch.equal(a, e) for a, e in zip(actual, expected))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_prepared_weights_are_kept_and_change_nothing(precision):
    G = random_generator(seed=3)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(1))
    first = image_and_grads(G, ws, precision)
    kept = image_and_grads(G, ws, precision)  # from the prepared weights of the first call
    with weights_prepared_every_call():
        fresh = image_and_grads(G, ws, precision)
    assert_all_equal(first, fresh)
    assert_all_equal(kept, fresh)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    layer = G.convs[0].conv
    assert layer.prepared_weights(dtype)[0] is layer.prepared_weights(dtype)[0]  # kept, not recomputed
    assert layer.prepared_weights(dtype)[0].dtype == dtype


def test_prepared_weights_are_counted_and_the_precision_not_chosen_keeps_none():
    """Kept weights cost memory: `prepared_bytes` counts them (about the convolution weights once per precision
    used, the upsampling ones twice, and the modulations' linear weights), `forget_prepared_weights` drops them,
    and choosing the precision leaves none of either behind."""
    from chunky.device import choose_precision

    G = random_generator(seed=3)
    ws = torch.randn(1, G.n_latent, G.style_dim)
    assert G.prepared_bytes() > 0  # the mapping's linear layers, from finding w_avg
    G.forget_prepared_weights()
    assert G.prepared_bytes() == 0
    with torch.no_grad():
        G.synthesis(ws)
        fp32 = G.prepared_bytes()
        with autocast("bf16"):
            G.synthesis(ws)
    layers = [layer for _, layer in G.modulated_layers(None)]
    # the upsampling layers keep their weight twice: as the transposed convolution's and as its phase kernels
    kept = sum(layer.weight.numel() * 4 * (2 if layer.upsample else 1) for layer in layers)
    kept += sum((layer.modulation.weight.numel() + layer.modulation.bias.numel()) * 4 for layer in layers)
    assert kept <= fp32 < 1.2 * kept and G.prepared_bytes() > fp32  # a bf16 copy besides
    G.forget_prepared_weights()
    assert G.prepared_bytes() == 0
    choose_precision(G, 16, repeat=1)
    assert G.prepared_bytes() == 0


def test_prepared_weights_follow_in_place_changes_loading_and_dtype():
    G, other = random_generator(seed=3), random_generator(seed=4)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(1))
    before = image_and_grads(G, ws)
    for parameter in (G.convs[0].conv.weight, G.convs[1].conv.modulation.weight, G.to_rgbs[0].conv.modulation.bias):
        with torch.no_grad():
            parameter.add_(1)
        changed = image_and_grads(G, ws)
        assert not torch.equal(changed[0], before[0])
        with weights_prepared_every_call():
            assert_all_equal(changed, image_and_grads(G, ws))
        before = changed
    G.load_state_dict(other.state_dict())
    assert_all_equal(image_and_grads(G, ws), image_and_grads(other, ws))
    G.double()  # new storage, new dtype
    doubled = image_and_grads(G, ws, dtype=torch.float64)
    with weights_prepared_every_call():
        assert_all_equal(doubled, image_and_grads(G, ws, dtype=torch.float64))
    G.float()
    assert_all_equal(image_and_grads(G, ws), image_and_grads(other, ws))
    # one entry per dtype, stale ones dropped: the memory held stays bounded
    assert all(len(layer._prepared) == 1 for _, layer in G.modulated_layers(None))
    assert all(len(layer.modulation._scaled) == 1 for _, layer in G.modulated_layers(None))


def test_training_the_weights_bypasses_the_prepared_weights():
    G = random_generator(seed=3)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(1))
    image_and_grads(G, ws)  # prepared weights kept from frozen use
    G.requires_grad_(True)
    trained = image_and_grads(G, ws)
    G.zero_grad(set_to_none=True)
    with weights_prepared_every_call():
        expected = image_and_grads(G, ws)
    assert len(trained) == 2 + len(G.modulated_layers(None))  # every modulated weight got its gradient
    assert_all_equal(trained, expected)
    torch.optim.SGD(G.parameters(), lr=0.1).step()  # in place: the next frozen render sees the new weights
    G.requires_grad_(False)
    stepped = image_and_grads(G, ws)
    with weights_prepared_every_call():
        assert_all_equal(stepped, image_and_grads(G, ws))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_phase_kernels_compute_the_transposed_convolution(dtype, channels_last):
    """The frozen upsampling path (four ordinary convolutions, `_PhaseTransposedConv`) is conv_transpose2d with
    stride 2: the same output and gradient to its input (to rounding), in the input's memory layout."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 5, 7, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(6, 4, 3, 3, generator=g).to(dtype)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected = F.conv_transpose2d(x1, weight, stride=2)
    actual = _PhaseTransposedConv.apply(x2, weight, *phase_kernels(weight))
    grad = torch.randn(expected.shape, generator=g).to(dtype)
    expected.backward(grad)
    actual.backward(grad)
    assert actual.shape == expected.shape == (2, 4, 11, 15) and actual.dtype == dtype
    tolerance = 1e-12 if dtype == torch.float64 else 1e-2
    assert relative_error(actual.float(), expected.float()) < tolerance
    assert relative_error(x2.grad.float(), x1.grad.float()) < tolerance
    assert is_channels_last(actual) == channels_last
    with pytest.raises(InvalidInputError, match="3x3"):
        phase_kernels(torch.zeros(6, 4, 1, 1))


def test_frozen_renders_match_the_transposed_convolution_path():
    """A frozen generator upsamples through the phase kernels, one whose weights train through
    conv_transpose2d: the same images and code gradients (to rounding)."""
    G = random_generator(seed=3)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(1))
    frozen = image_and_grads(G, ws)
    G.requires_grad_(True)
    training = image_and_grads(G, ws)
    assert relative_error(frozen[0], training[0]) < 1e-5
    assert relative_error(frozen[1], training[1]) < 1e-5


def test_prepared_weights_after_inference_mode_still_train_codes_and_are_not_copied():
    G = random_generator(seed=3)
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        G.synthesis(ws)
    kept = image_and_grads(G, ws)  # inference tensors cannot be saved for backward: they are not reused here
    for duplicate in (copy.deepcopy(G), pickle.loads(pickle.dumps(G))):  # tuning copies; torch.save pickles
        assert all(layer._prepared == {} for _, layer in duplicate.modulated_layers(None))
        assert set(duplicate.state_dict()) == set(G.state_dict())
        with weights_prepared_every_call():
            assert_all_equal(image_and_grads(duplicate, ws), kept)


# ---------------------------------------------------------------------------------- style mix
def halves(size: int = 32) -> torch.Tensor:
    """[2, 1, size, size]: the left and the right half."""
    left = torch.zeros(1, 1, size, size)
    left[..., : size // 2] = 1
    return torch.cat([left, 1 - left])


def test_a_style_mix_draws_each_code_where_its_mask_is(tiny_generator):
    """A mask covering everything gives that code's render; equal codes give their common render; codes that
    differ only in the last block's rows (6, 7: 32 px layers) give each code's own render in its half, except
    next to the boundary, where the 3x3 convolution sees the other code's pixels."""
    from chunky.generator import StyleMix

    G = tiny_generator
    ws = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(7))
    own = G.synthesis(ws)
    everything = torch.zeros(2, 1, 32, 32)
    everything[1] = 1
    assert torch.allclose(G.synthesis(ws, mix=StyleMix(everything)), own[1:], atol=1e-5)
    assert torch.allclose(G.synthesis(ws[:1].expand(2, -1, -1), mix=StyleMix(halves())), own[:1], atol=1e-5)
    fine = ws[:1].repeat(2, 1, 1)
    fine[1, 6:] = ws[1, 6:]
    apart = G.synthesis(fine)
    mixed = G.synthesis(fine, mix=StyleMix(halves()))
    assert mixed.shape == (1, 3, 32, 32)
    assert torch.allclose(mixed[..., :14], apart[:1, ..., :14], atol=1e-5)
    assert torch.allclose(mixed[..., 18:], apart[1:, ..., 18:], atol=1e-5)
    assert not torch.allclose(mixed[..., 14:18], apart[:1, ..., 14:18], atol=1e-3)  # the boundary mixes


def test_a_style_mix_takes_one_code_per_mask_and_no_window(tiny_generator):
    from chunky.generator import StyleMix

    G = tiny_generator
    ws = torch.randn(3, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(8))
    with pytest.raises(InvalidInputError, match="StyleMix of 2 masks mixes as many codes"):
        G.synthesis(ws, mix=StyleMix(halves()))
    with pytest.raises(InvalidInputError, match="without a window"):
        G.synthesis(ws[:2], mix=StyleMix(halves()), window=Window(8, 0, 0, 4, 4))
    with pytest.raises(InvalidInputError, match=r"StyleMix masks must be \[K, 1, R, R\]"):
        StyleMix(torch.ones(2, 32, 32))
    with pytest.raises(InvalidInputError, match="a 32 px layer needs more"):
        G.synthesis(ws[:2], mix=StyleMix(halves(16)))
