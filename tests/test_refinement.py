import pytest
import torch

from chunky.compositing import soft_composite
from chunky.errors import InvalidInputError
from chunky.refinement import refine_all, refine_boundary


def scene():
    """Two segments split at column 32. The first one's render is wrong in columns 28-35 (straddling
    the boundary); the second one's render is right there (it is wrong only left of column 20)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    photo = torch.stack([torch.sin(3 * x), torch.cos(2 * y), x * y])[None] * 0.5
    masks = torch.zeros(2, 1, 64, 64)
    masks[0, :, :, :32], masks[1, :, :, 32:] = 1, 1
    renders = photo.expand(2, -1, -1, -1).clone()
    renders[0, :, :, 28:36] += 0.8
    renders[1, :, :, :20] -= 0.8
    return photo, masks, renders


def test_boundary_moves_off_the_high_error_band_and_the_error_there_drops():
    photo, masks, renders = scene()
    refined = refine_boundary(masks, photo, renders, 0, 1, band_px=8)
    columns = refined[0, 0].sum(0)  # how many rows of each column belong to the first segment
    assert columns[:27].eq(64).all() and columns[29:].eq(0).all()  # the boundary moved from 32 to 28
    band = slice(24, 40)
    before = (soft_composite(renders, masks, photo) - photo)[..., band].abs().mean()
    after = (soft_composite(renders, refined, photo) - photo)[..., band].abs().mean()
    assert after < 0.35 * before, (before, after)  # measured: 0.20 -> 0.04 on this scene
    assert torch.equal(refined.sum(0), masks.sum(0))  # still a partition: pixels only changed hands


def test_motion_is_limited_to_the_band():
    photo, masks, renders = scene()
    renders[0, :, :, 16:40] += 0.8  # the first render is wrong far into its own segment
    refined = refine_boundary(masks, photo, renders, 0, 1, band_px=4)
    changed = (refined != masks).any(dim=0)[0].any(dim=0)
    assert changed.nonzero().min() >= 32 - 4 and changed.nonzero().max() < 32


def test_equal_errors_do_not_move_the_boundary():
    photo, masks, _ = scene()
    renders = photo.expand(2, -1, -1, -1).clone() + 0.01
    assert torch.equal(refine_boundary(masks, photo, renders, 0, 1), masks)


def test_refine_all_touches_only_boundaries_of_chosen_segments():
    photo, masks, renders = scene()
    third = torch.zeros(1, 1, 64, 64)
    masks = torch.cat([masks, third])  # an empty third segment touches nothing
    renders = torch.cat([renders, photo])
    assert torch.equal(refine_all(masks, photo, renders, segments=[2]), masks)
    assert not torch.equal(refine_all(masks, photo, renders), masks)
    with pytest.raises(InvalidInputError, match="two different segment indices"):
        refine_boundary(masks, photo, renders, 1, 1)
