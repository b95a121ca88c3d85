import pytest
import torch

from chunky.config import InversionConfig
from chunky.directions import pca_directions
from chunky.editing import apply_edit, freeze, move_codes, style_variations, transfer_segment
from chunky.errors import InvalidInputError
from chunky.inversion import invert, reproject
from chunky.losses import masked_mean
from chunky.segmentation import dilate_masks

FAST = InversionConfig(steps=5, perceptual="none", resolution=32, dilate_px=0, lr=0.05)


@pytest.fixture(scope="module")
def three_segments():
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    masks = torch.zeros(3, 1, 32, 32)
    masks[0, :, :, :10], masks[1, :, :, 10:20], masks[2, :, :, 20:] = 1, 1, 1
    return target, masks


@pytest.fixture(scope="module")
def directions(tiny_generator):
    return pca_directions(tiny_generator, count=3)


@pytest.mark.parametrize("space", ["w", "w+", "s"])
def test_edit_of_some_segments_changes_nothing_outside_them(tiny_generator, three_segments, directions, space):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST.replace(space=space))
    edit = apply_edit(tiny_generator, result, directions, {"Component 1": 3.0}, segments=[1])
    region = dilate_masks(masks[1:2], 4)[0, 0] > 0  # soft_composite feathers with two 2 px box blurs
    assert torch.equal(edit.composite[..., ~region], result.composite[..., ~region])
    assert (edit.composite[..., region] - result.composite[..., region]).abs().max() > 0.05
    assert torch.equal(edit.renders[0], result.renders[0]) and torch.equal(edit.renders[2], result.renders[2])
    # only the edited code moved: the others stay with their renders (a later freeze must not shift them)
    codes, original = (edit.codes[0], result.codes[0]) if space == "s" else (edit.codes, result.codes)
    if space == "w":
        original = original[:, None].expand(-1, tiny_generator.n_latent, -1)
    assert torch.equal(codes[[0, 2]], original[[0, 2]]) and not torch.equal(codes[1], original[1])


def test_edit_of_all_segments_matches_editing_each_code(tiny_generator, three_segments, directions):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST)
    strengths = {"Component 1": 2.0, "Component 2": -1.0}
    edit = apply_edit(tiny_generator, result, directions, strengths)
    offset = 2.0 * directions[0].vector - 1.0 * directions[1].vector
    with torch.no_grad():
        expected = tiny_generator.synthesis(result.codes + offset)
    torch.testing.assert_close(edit.renders, expected, atol=1e-5, rtol=0)


def test_s_space_edit_equals_the_w_plus_edit(tiny_generator, directions):
    w = tiny_generator.w_avg[:, None].expand(1, tiny_generator.n_latent, -1).clone()
    offset = directions[0].vector
    s_moved = move_codes(tiny_generator, tiny_generator.styles(w), offset)
    expected = tiny_generator.styles(w + offset)
    for a, b in zip(s_moved, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_preview_at_lower_resolution(tiny_generator, three_segments, directions):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST)
    preview = apply_edit(tiny_generator, result, directions, {"Component 1": 1.0}, resolution=16)
    assert preview.composite.shape == (1, 3, 16, 16)
    with pytest.raises(InvalidInputError, match="full-resolution"):
        freeze(result, preview)


def test_freeze_makes_edits_incremental(tiny_generator, three_segments, directions):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST)
    once = apply_edit(tiny_generator, result, directions, {"Component 1": 1.0})
    frozen = freeze(result, once)
    assert torch.equal(frozen.target, once.composite)
    twice = apply_edit(tiny_generator, frozen, directions, {"Component 1": 1.0})
    direct = apply_edit(tiny_generator, result, directions, {"Component 1": 2.0})
    torch.testing.assert_close(twice.renders, direct.renders, atol=1e-5, rtol=0)


@pytest.mark.parametrize("space", ["w", "s"])
def test_reproject_after_freeze_starts_from_the_current_codes_and_moves_only_the_chosen(
    tiny_generator, three_segments, directions, space
):
    target, masks = three_segments
    config = FAST.replace(space=space, dilate_px=4, steps=20)  # segment 2's loss region reaches into segment 1
    result = invert(tiny_generator, target, masks, config=config)
    frozen = freeze(result, apply_edit(tiny_generator, result, directions, {"Component 1": 3.0}, segments=[1]))
    again = reproject(tiny_generator, frozen, [2], config=config.replace(steps=10, lr=0.02))

    # The first step judges the frozen code of segment 2 against the frozen composite (not w_avg's render).
    region = dilate_masks(masks[2:3], 4)
    start = masked_mean((frozen.renders[2:3] - frozen.target).square(), region)
    assert again.history[0] == pytest.approx(float(start), rel=1e-4)
    assert again.loss < 0.9 * again.history[0]
    assert float(again.segment_losses["total"][2]) == pytest.approx(again.loss, rel=1e-5)

    assert torch.equal(again.renders[:2], frozen.renders[:2])
    codes, old = (again.codes, frozen.codes) if space == "w" else (again.codes[0], frozen.codes[0])
    assert torch.equal(codes[:2], old[:2]) and not torch.equal(codes[2], old[2])
    outside = dilate_masks(masks[2:3], 4)[0, 0] == 0
    assert torch.equal(again.composite[..., outside], frozen.composite[..., outside])
    assert torch.equal(again.target, frozen.target)


def test_reproject_refuses_kept_or_no_segments(tiny_generator, three_segments):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST, keep=[0])
    with pytest.raises(InvalidInputError, match="taken from the photo"):
        reproject(tiny_generator, result, [0])
    with pytest.raises(InvalidInputError, match="at least one segment"):
        reproject(tiny_generator, result, [])


def test_kept_segments_cannot_be_edited(tiny_generator, three_segments, directions):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST, keep=[0])
    with pytest.raises(InvalidInputError, match=r"Segments \[0\] were kept"):
        apply_edit(tiny_generator, result, directions, {"Component 1": 1.0}, segments=[0])
    with pytest.raises(InvalidInputError, match="Unknown directions"):
        apply_edit(tiny_generator, result, directions, {"smile": 1.0})


def test_variations_change_only_the_chosen_segment(tiny_generator, three_segments):
    target, masks = three_segments
    result = invert(tiny_generator, target, masks, config=FAST)
    variations = style_variations(tiny_generator, result, 2, count=3, seed=1)
    region = dilate_masks(masks[2:3], 4)[0, 0] > 0
    outputs = [v.composite for v in variations]
    for out in outputs:
        assert torch.equal(out[..., ~region], result.composite[..., ~region])
    assert not torch.equal(outputs[0], outputs[1])
    again = style_variations(tiny_generator, result, 2, count=3, seed=1)
    assert torch.equal(again[0].composite, outputs[0])  # seeded


def test_region_transfer_changes_only_the_union_of_both_segments(tiny_generator):
    target_a = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    target_b = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    masks_a = torch.zeros(2, 1, 32, 32)
    masks_a[0, :, :8], masks_a[1, :, 8:] = 1, 1  # "hair" is the top 8 rows in A ...
    masks_b = torch.zeros(2, 1, 32, 32)
    masks_b[0, :, :12], masks_b[1, :, 12:] = 1, 1  # ... and the top 12 rows in B
    a = invert(tiny_generator, target_a, masks_a, config=FAST)
    b = invert(tiny_generator, target_b, masks_b, config=FAST)
    for stitch in (False, True):
        moved = transfer_segment(a, b, 0, 0, stitch=stitch)
        outside = slice(12 + 4, 32)  # below the union, past the 4 px feathering
        assert torch.equal(moved.composite[..., outside, :], a.composite[..., outside, :])
        assert not torch.allclose(moved.composite[..., :12, :], a.composite[..., :12, :], atol=0.05)
        if not stitch:  # without Poisson cloning, the new hair is B's render inside B's hair region
            torch.testing.assert_close(moved.composite[..., :8, :], b.renders[0:1, :, :8, :], atol=1e-5, rtol=0)
    # the transferred segment now carries B's code: after a freeze, edits move B's hair, not A's old one
    frozen = freeze(a, transfer_segment(a, b, 0, 0, stitch=False))
    assert torch.equal(frozen.codes[0], b.codes[0]) and torch.equal(frozen.codes[1], a.codes[1])
    unchanged = apply_edit(tiny_generator, frozen, [], {}, segments=[0])
    torch.testing.assert_close(unchanged.renders[0], b.renders[0], atol=1e-5, rtol=0)
    with pytest.raises(InvalidInputError, match="same size"):
        transfer_segment(
            a, invert(tiny_generator, target_b[..., :16, :16], None, config=FAST.replace(resolution=16)), 0, 0
        )


def test_s_codes_map_back_to_their_w_plus_rows_for_coordinate_edits():
    from chunky.directions import ganspace_directions
    from chunky.editing import combined_offset, w_plus_of
    from chunky.generator import random_generator

    G = random_generator(32, 8, 2, seed=3)  # every W+ row feeds at least 8 style channels: exact
    g = torch.Generator().manual_seed(0)
    w_plus = G.mapping(torch.randn(2, 8, generator=g))[:, None].expand(-1, G.n_latent, -1) + 0.1 * torch.randn(
        2, G.n_latent, 8, generator=g
    )
    styles = G.styles(w_plus)
    torch.testing.assert_close(w_plus_of(G, styles), w_plus, atol=1e-4, rtol=0)
    comp = torch.linalg.qr(torch.randn(8, 8, generator=g))[0].T
    pca = {"comp": comp[:, None], "std": torch.ones(8), "mean": G.w_avg}
    (d,) = ganspace_directions(pca, G, {"test": (2, 1, 4, 5.0)})
    offset = combined_offset([d], {"test": 1.0}, G, w_plus_of(G, styles))
    for a, b in zip(move_codes(G, styles, offset), G.styles(w_plus + offset)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert d.setpoint.coordinate(w_plus + offset).sub(5.0).abs().max() < 1e-4
