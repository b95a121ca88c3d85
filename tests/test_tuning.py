import pytest
import torch

from chunky.config import InversionConfig
from chunky.directions import pca_directions
from chunky.editing import apply_edit, freeze
from chunky.errors import InvalidInputError
from chunky.generator import random_generator
from chunky.inversion import invert, reproject
from chunky.losses import masked_mean
from chunky.segmentation import dilate_masks
from chunky.tuning import tune_segment

CONFIG = InversionConfig(steps=15, perceptual="none", resolution=32, dilate_px=2, lr=0.05, space="w+")


@pytest.fixture(scope="module")
def scene(tiny_generator):
    """A face from another generator (so no code fits it exactly), two segments, and their inversion."""
    other = random_generator(seed=1)
    with torch.no_grad():
        target = other.synthesis(
            other.mapping(torch.randn(1, other.style_dim, generator=torch.Generator().manual_seed(3)))
        )
    target = target.clamp(-1, 1)
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, :, :, :16], masks[1, :, :, 16:] = 1, 1
    return invert(tiny_generator, target, masks, config=CONFIG)


def segment_l2(result, k):
    region = dilate_masks(result.masks[k : k + 1], CONFIG.dilate_px)
    return float(masked_mean((result.renders[k : k + 1] - result.target).square(), region))


def test_tuning_fits_the_segment_better_and_changes_nothing_else(tiny_generator, scene):
    before = {name: p.clone() for name, p in tiny_generator.state_dict().items()}
    calls = []
    tuned = tune_segment(tiny_generator, scene, 0, steps=30, lr=3e-3, progress=lambda *a: calls.append(a))
    assert len(calls) == 30 and calls[-1][:2] == (30, 30)
    assert segment_l2(tuned, 0) < 0.5 * segment_l2(scene, 0)
    assert float(tuned.segment_losses["l2"][0]) == pytest.approx(segment_l2(tuned, 0), rel=1e-4)
    assert torch.equal(tuned.renders[1], scene.renders[1])
    outside = dilate_masks(scene.masks[0:1], 4)[0, 0] == 0  # the composite feathers with two 2 px box blurs
    assert torch.equal(tuned.composite[..., outside], scene.composite[..., outside])
    assert all(torch.equal(p, before[name]) for name, p in tiny_generator.state_dict().items())  # shared G untouched
    assert set(tuned.generators) == {0} and not scene.generators
    assert torch.equal(tuned.codes, scene.codes)  # the pivot stays


def test_edits_freezes_and_reprojection_use_the_tuned_generator(tiny_generator, scene):
    tuned = tune_segment(tiny_generator, scene, 0, steps=10, lr=3e-3)
    directions = pca_directions(tiny_generator, count=2)
    unchanged = apply_edit(tiny_generator, tuned, directions, {"Component 1": 0.0}, segments=[0])
    torch.testing.assert_close(unchanged.renders[0], tuned.renders[0], atol=1e-5, rtol=0)
    edited = apply_edit(tiny_generator, tuned, directions, {"Component 1": 2.0}, segments=[0])
    untuned = apply_edit(tiny_generator, scene, directions, {"Component 1": 2.0}, segments=[0])
    assert (edited.renders[0] - untuned.renders[0]).abs().max() > 1e-3

    frozen = freeze(tuned, edited)
    assert frozen.generators[0] is tuned.generators[0]
    again = reproject(tiny_generator, frozen, [0, 1], config=CONFIG.replace(steps=3, lr=1e-3))
    # the first step of segment 0 judges the tuned render of its code: its loss is the frozen render's
    region = dilate_masks(frozen.masks[0:1], CONFIG.dilate_px)
    start0 = float(masked_mean((frozen.renders[0:1] - frozen.target).square(), region))
    region1 = dilate_masks(frozen.masks[1:2], CONFIG.dilate_px)
    start1 = float(masked_mean((frozen.renders[1:2] - frozen.target).square(), region1))
    assert again.history[0] == pytest.approx(start0 + start1, rel=1e-4)
    assert again.generators[0] is tuned.generators[0]


def test_tuning_stops_when_asked_and_refuses_bad_requests(tiny_generator, scene):
    steps_seen = []
    tune_segment(
        tiny_generator, scene, 1, steps=20, progress=lambda step, total, info: steps_seen.append(step) or step < 3
    )
    assert steps_seen == [1, 2, 3]
    kept = invert(tiny_generator, scene.target, scene.masks, config=CONFIG.replace(steps=1), keep=[0])
    with pytest.raises(InvalidInputError, match="taken from the photo"):
        tune_segment(tiny_generator, kept, 0)
    with pytest.raises(InvalidInputError, match="integer in"):
        tune_segment(tiny_generator, scene, 1, steps=0)
