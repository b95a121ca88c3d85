import numpy as np
import pytest
import torch

from chunky.config import InversionConfig
from chunky.editing import (GANSPACE_RECIPES, Direction, apply_edit, as_w_plus, combined_offset, freeze,
                            ganspace_directions, load_direction_file, load_direction_folder, move_codes, pca_directions,
                            style_variations, transfer_segment)
from chunky.errors import InvalidInputError
from chunky.inversion import invert, reproject
from chunky.losses import masked_mean
from chunky.segmentation import dilate_masks
from tests.conftest import shared_file

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


def test_pca_directions_are_ordered_orthogonal_components(tiny_generator, directions):
    assert [d.name for d in directions] == ["Component 1", "Component 2", "Component 3"]
    rows = torch.stack([d.vector[0] for d in directions]).double()
    norms = rows.norm(dim=1)
    assert norms[0] >= norms[1] >= norms[2] > 0  # scaled by the standard deviation along each
    cosines = (rows / norms[:, None]) @ (rows / norms[:, None]).T
    torch.testing.assert_close(cosines, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert all(torch.equal(d.vector[0], d.vector[-1]) for d in directions)  # every layer


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
def test_reproject_after_freeze_starts_from_the_current_codes_and_moves_only_the_chosen(tiny_generator, three_segments,
                                                                                       directions, space):
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
    # GANSpace: strength * std[k] * comp[k] on the recipe's layers only
    pca = torch.load(shared_file("directions/e4e/e4e_ganspace_ffhq_pca.pt"), map_location="cpu", weights_only=True)
    by_name = {d.name: d for d in ganspace_directions(pca, FFHQShape())}
    offset = combined_offset(list(by_name.values()), {"white hair": 3.0}, FFHQShape())
    expected = torch.zeros(18, 512)
    expected[7:10] = 3.0 * pca["std"][57].float() * pca["comp"][57, 0].float()
    torch.testing.assert_close(offset, expected)
    assert by_name["white hair"].limits == (-24.0, 24.0) and set(GANSPACE_RECIPES) == set(by_name)


def test_a_ganspace_file_in_the_directions_folder_yields_its_recipes(tmp_path, tiny_generator):
    G = tiny_generator
    pca = {"comp": torch.randn(60, 1, G.style_dim), "std": torch.rand(60), "mean": torch.zeros(1, G.style_dim)}
    torch.save(pca, tmp_path / "pca.pt")
    names = {d.name for d in load_direction_folder(tmp_path, G)}
    # only recipes whose layers exist in an 8-row W+ fit: eye openness (7-8) and smile (4-5), glasses (0-4)
    assert names == {"eye openness", "smile", "glasses", "age"}


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
        transfer_segment(a, invert(tiny_generator, target_b[..., :16, :16], None, config=FAST.replace(resolution=16)), 0, 0)
