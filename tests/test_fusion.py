"""The layer tails compiled into one kernel (chunky.fusion): the same values and gradients as op by op, shared by
inputs of any size, a failure falling back for good, and the measured choice (chunky.device.choose_fusion)."""

import logging

import pytest
import torch

from chunky import fusion
from chunky.calibration import Estimates, choose_fusion_as_configured
from chunky.config import InversionConfig, preset
from chunky.device import FusionChoice, autocast, choose_fusion
from chunky.generator import random_generator
from chunky.inversion import invert


@pytest.fixture(autouse=True)
def op_by_op_afterwards():
    yield
    fusion._failed = False
    fusion.use_compiled(False)


def tail_inputs(size: int, dtype: torch.dtype, per_pixel: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(2, 6, size, size, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    demod = torch.rand(1 if per_pixel else 2, 6, size if per_pixel else 1, size if per_pixel else 1, generator=g)
    noise = torch.randn(1, 1, size, size, generator=g)
    noise_weight, bias = torch.randn(1, generator=g), torch.randn(1, 6, 1, 1, generator=g)
    return [out.requires_grad_(True), demod.to(dtype).requires_grad_(True), noise, noise_weight, bias]


def values_and_grads(tail, inputs):
    inputs = [x.detach().clone().requires_grad_(x.requires_grad) for x in inputs]
    result = tail(*inputs)
    (result.float() * torch.linspace(-1, 1, result.numel()).reshape(result.shape)).sum().backward()
    return [result.detach().float()] + [x.grad.float() for x in inputs if x.requires_grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_tail_matches_the_op_by_op_tail_at_every_size(dtype):
    """Values and gradients (to the activations and to the demodulation) against the op-by-op tail computed in
    fp32 from the same inputs: in fp32 the same to rounding; in bf16 no further from it than the op-by-op bf16 tail
    is (which rounds after every op), give or take 1% of the largest value."""
    fusion.use_compiled(True)
    assert fusion.compiled_in_use()
    for size, per_pixel in ((8, False), (13, False), (8, True)):  # windows of any size; a StyleMix's per-pixel demod
        inputs = tail_inputs(size, dtype, per_pixel)
        compiled = values_and_grads(fusion.layer_tail, inputs)
        op_by_op = values_and_grads(fusion.eager_tail, inputs)
        exact = values_and_grads(fusion.eager_tail, [x.float() for x in inputs])
        for actual, eager, wanted in zip(compiled, op_by_op, exact, strict=True):
            assert actual.shape == wanted.shape
            error, eager_error = (actual - wanted).abs().max(), (eager - wanted).abs().max()
            if dtype == torch.float32:
                assert error <= 1e-5 * wanted.abs().max()
            else:
                assert error <= 2 * eager_error + 1e-2 * wanted.abs().max()
    assert fusion.compiled_in_use()  # nothing failed
    with torch.no_grad():  # renders for display: a kernel of their own
        out, demod, noise, noise_weight, bias = tail_inputs(8, dtype)
        assert torch.allclose(
            fusion.layer_tail(out, demod, None, noise_weight, bias).float(),
            fusion.eager_tail(out, demod, None, noise_weight, bias).float(),
            rtol=2e-2,
            atol=2e-2,
        )


def test_a_failing_compiled_tail_falls_back_for_good(monkeypatch, caplog):
    fusion.use_compiled(True)

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fusion, "_compiled", broken)
    inputs = [x.detach() for x in tail_inputs(8, torch.float32)]
    with caplog.at_level(logging.WARNING, logger="chunky.fusion"):
        result = fusion.layer_tail(*inputs)
    assert torch.equal(result, fusion.eager_tail(*inputs))
    assert "compiled layer tail failed (RuntimeError: no C++ compiler)" in caplog.text
    assert not fusion.compiled_in_use()
    fusion.use_compiled(True)  # asking again does not bring the failing kernel back
    assert not fusion.compiled_in_use()


def test_choose_fusion_measures_both_and_renders_the_same():
    G = random_generator(seed=3)
    codes = G.w_avg[:, None].expand(1, G.n_latent, -1)
    with torch.no_grad():
        plain = G.synthesis(codes)
    choice = choose_fusion(G, G.size, "fp32", repeat=1)
    assert set(choice.seconds) == {"op by op", "fused"} and all(s > 0 for s in choice.seconds.values())
    assert choice.fused == fusion.compiled_in_use() and choice.compile_seconds >= 0
    assert choice.fused == (choice.seconds["fused"] <= 0.95 * choice.seconds["op by op"])
    fusion.use_compiled(True)
    with torch.no_grad():
        fused = G.synthesis(codes)
        with autocast("bf16"):
            fused_bf16 = G.synthesis(codes).float()
    assert (fused - plain).abs().max() <= 1e-5 * plain.abs().max()
    assert (fused_bf16 - plain).abs().mean() <= 2e-2 * plain.abs().mean()  # bf16 rounding, as op by op


def test_calibration_honours_chunky_fusion(monkeypatch, caplog):
    """CHUNKY_FUSION=off skips the measurement (as the test suite sets it); another value is named and measured."""
    G = random_generator(seed=3)
    measured = FusionChoice(False, {"op by op": 1.0, "fused": 1.0}, 0.0)
    monkeypatch.setattr("chunky.calibration.choose_fusion", lambda G, size, precision: measured)
    monkeypatch.setenv("CHUNKY_FUSION", "off")
    assert choose_fusion_as_configured(G, 16, "fp32") is None
    monkeypatch.setenv("CHUNKY_FUSION", "yes please")
    with caplog.at_level(logging.WARNING, logger="chunky.calibration"):
        assert choose_fusion_as_configured(G, 16, "fp32") is measured
    assert 'CHUNKY_FUSION must be "auto" or "off", got \'yes please\'' in caplog.text


def test_the_background_calibration_compiles_and_chooses(monkeypatch, tiny_generator):
    """As the app starts: `Estimates.start` compiles the tails in its own thread, measures them, keeps the choice
    (and uses it for the presets it then times)."""
    import types

    monkeypatch.setenv("CHUNKY_FUSION", "auto")
    editor = types.SimpleNamespace(
        generator=tiny_generator, device=torch.device("cpu"), work_size=lambda: 32, perceptual=lambda name: None
    )
    estimates = Estimates()
    estimates.start(editor, {"preview": preset("preview", perceptual="none")}).join(timeout=600)
    assert estimates.rates is not None, "the calibration failed (see the log)"
    assert set(estimates.fusion.seconds) == {"op by op", "fused"}
    assert fusion.compiled_in_use() == estimates.fusion.fused


def test_after_choose_fusion_an_inversion_compiles_nothing_more(windowed_scene):
    """`choose_fusion` compiles every kind of input an inversion gives the tail (with and without gradients,
    windows, several segments' lower blocks in one batch), so a visitor's first inversion waits for no compiler."""
    from torch._dynamo.utils import counters

    G, target, masks = windowed_scene
    choose_fusion(G, 64, "bf16", repeat=1)
    fusion.use_compiled(True)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    config = InversionConfig(
        steps=3, perceptual="none", resolution=64, precision="bf16", warm_start_steps=2, warm_start_resolution=32
    )
    invert(G, target, masks, config=config, segments_per_pass=1)
    assert counters["stats"]["unique_graphs"] == graphs
