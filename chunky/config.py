"""Frozen, validated settings. Defaults follow the paper and the authors' tool (Adam, lr 0.1, W+)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from chunky.device import PRECISIONS
from chunky.errors import InvalidInputError

SPACES = ("w", "w+", "s")
PERCEPTUAL = ("lpips-vgg", "lpips-alex", "none")
MAX_STEPS = 5000


@dataclass(frozen=True)
class InversionConfig:
    """How to project a photo (or its segments) into the generator.

    Attributes:
        space: "w" (one 512-d code per segment), "w+" (one per layer) or "s" (style space).
        steps: per-segment optimisation steps, 1..5000 (0 with ``joint_steps``: the joint codes are the result).
        lr: peak Adam learning rate; it ramps up over the first ``lr_rampup`` fraction of steps and
            down (cosine) over the last ``lr_rampdown`` fraction.
        reg_weight: weight of the pull toward the mean code, normalised as in the authors' tool:
            reg_weight * mean(((w_i - w_avg) / w_std)^2), the mean over layers and dimensions, with
            w_std^2 the total variance of the generator's codes (`chunky.losses.latent_spread`: W's
            for W codes, over 100 on FFHQ, whose first 80 principal components alone sum to 82;
            n_latent times that in W+, so a W+ code is pulled 1/n_latent as hard). 0 turns it off;
            10 is the tool's setting. Mapping to a lambda_reg on the plain mean((w_i - w_avg)^2), which
            is how chunky read the paper's lambda_reg before: reg_weight = lambda_reg * w_std^2; so
            lambda_reg = 1 is about 13x the tool's strength in W and 230x in W+ on FFHQ.
        perceptual: masked LPIPS backbone, or "none" (pixel loss only).
        pixel_weight: weight of the masked mean squared error on [-1, 1] images.
        dilate_px: how far each segment's loss region grows past its mask (in target pixels). The
            composite blends two renders only where both were fitted, so 0 (the default, chosen by
            measurement: docs/fidelity.md, "Compositing") gives a hard composite that keeps each segment's
            accuracy; larger values trade accuracy at the boundary for room to feather the seam.
        resolution: output resolution used while optimising (a power of two <= the render size).
        coarse_to_fine: optimise the first half of the steps at half ``resolution``.
        pixel_only_fraction: the first fraction of the per-segment steps after the coarse half judge by the
            pixel loss alone (no LPIPS pass: a 256 px step costs about 0.8x on a CPU); the rest add the
            perceptual term back. 0 uses ``perceptual`` on every step.
        lpips_on_composite: the per-segment steps judge the LPIPS term once per step on the composite of every
            running segment's render (each inside its loss region, the photo elsewhere), each segment's term the
            mean of that one distance map over its loss region, instead of once per segment on its render pasted
            into the photo (the authors' way, the default). One backbone pass per step instead of one per
            segment, and the term judges what is shown; near a boundary a segment's term then also sees its
            neighbours' renders (docs/speed.md, "LPIPS on the composite"). The L2 term is the same either way.
        window_segments: render a small segment's window only (its loss region plus a margin) for the
            last two synthesis blocks; much cheaper for eyes, brows, nose, mouth. L2 is unchanged; LPIPS
            then compares that window instead of the whole image.
        precision: "fp32" or "bf16" (autocast) for the forward passes.
        seed: for randomness in the run; today's runs have none (start at w_avg, constant noise), so
            it only distinguishes otherwise identical runs, e.g. in the cache.
        patience: end a phase early when the total loss has not improved by ``min_delta`` (relative) for
            this many steps; 0 never stops early.
        min_delta: relative improvement that counts for ``patience`` and ``segment_patience``.
        warm_start_steps: steps of a global inversion first (one code judged on the union of the
            projected segments' loss regions; one pass per step instead of one per segment); every
            segment then starts from its code. 0 (and no fine steps): every segment starts from w_avg.
            Skipped when `invert` is given starting codes.
        warm_start_resolution: the warm start's optimisation resolution (0: ``resolution``).
        warm_start_fine_steps: then this many more global steps at ``resolution``, which fit the W+ rows
            above ``warm_start_resolution`` (a warm start at 64 px leaves them at w_avg, and on the benchmark
            scene the 256 px error of its code was 10x its 64 px error); cheap, since they are one pass each.
        warm_start_perceptual: whether the warm start and the joint steps use the LPIPS term (else L2 only).
        joint_steps: then this many steps fit every segment's own code in one render per step instead of one
            per segment (`chunky.generator.StyleMix`: each pixel modulated by its segment's code), judged
            on the union of the loss regions. Meanwhile the W+ rows (S layers) of resolutions up to
            ``resolution / joint_shared_scale`` stay one code shared by every segment, so that each segment's
            own render, which the composite shows, stays close to the joint render: with every row free the
            two drifted apart (benchmark scene: joint render 0.051, composite 0.095 MSE). W+ and S only (a W
            code has no rows to share). Where the warm start does not run (one segment, or `invert` given starting
            codes) they are per-segment steps. In no preset: on real faces with the small model the composite
            still drifted from the joint render (docs/speed.md, "Joint steps").
        joint_shared_scale: see ``joint_steps``; a power of two (1 shares every row: a global code).
        segment_shared_scale: the per-segment steps keep the W+ rows (S layers) of resolutions up to
            ``resolution / segment_shared_scale`` one code shared by every segment, as they start (the warm
            start's code, else w_avg), and fit only the rows above. The blocks up to there are then rendered once
            for all segments (`chunky.generator.Trunk`) instead of in every segment's every step, and get no
            backward pass (at 256 px with scale 4, a segment's step runs the 128 and 256 px blocks only). 0: every
            row is fitted per segment. A power of two >= 2 (>= 4 with ``coarse_to_fine``); ignored in space "w"
            (a W code is one row for every layer), where the shared part would be below 8 px, and where `invert`
            is given starting codes.
        segment_patience: a segment whose own loss has not improved by ``min_delta`` for this many
            steps stops (keeps its best code, costs no more passes); 0 runs every segment to the end.
        full_render_fraction: the last fraction of ``steps`` (after the coarse half) renders at the output
            size and area-downsamples to ``resolution`` for the loss, so that the W+ rows and RGB layers
            above ``resolution`` (which otherwise get no gradient) fit too and what is shown at the output
            size is what was optimised (the StyleGAN2-ADA projector's way). Only matters when the output is
            larger than ``resolution``; 0 is faster there but then the shown image was never judged (on a
            tiny model its error at ``resolution`` was 56-80x that of a full-resolution inversion).
    """

    space: str = "w+"
    steps: int = 200
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    reg_weight: float = 0.0
    perceptual: str = "lpips-vgg"
    pixel_weight: float = 1.0
    dilate_px: int = 0
    resolution: int = 256
    coarse_to_fine: bool = False
    pixel_only_fraction: float = 0.0
    lpips_on_composite: bool = False
    window_segments: bool = True
    precision: str = "fp32"
    seed: int = 0
    patience: int = 0
    min_delta: float = 1e-3
    warm_start_steps: int = 0
    warm_start_resolution: int = 0
    warm_start_fine_steps: int = 0
    warm_start_perceptual: bool = True
    joint_steps: int = 0
    joint_shared_scale: int = 8
    segment_shared_scale: int = 0
    segment_patience: int = 0
    full_render_fraction: float = 1.0

    def __post_init__(self):
        def fail(name, expected):
            raise InvalidInputError(f"InversionConfig.{name} must be {expected}, got {getattr(self, name)!r}.")

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                fail(f.name, "a finite number")

        if self.space not in SPACES:
            fail("space", f"one of {SPACES}")
        if not isinstance(self.steps, int) or not (0 if self.joint_steps else 1) <= self.steps <= MAX_STEPS:
            fail("steps", f"an integer in [1, {MAX_STEPS}] (0 with joint_steps)")
        if not self.lr > 0:
            fail("lr", "> 0")
        for name in ("lr_rampup", "lr_rampdown", "pixel_only_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                fail(name, "in [0, 1]")
        for name in ("reg_weight", "pixel_weight", "min_delta"):
            if not getattr(self, name) >= 0:
                fail(name, ">= 0")
        if self.perceptual not in PERCEPTUAL:
            fail("perceptual", f"one of {PERCEPTUAL}")
        if self.perceptual == "none" and self.pixel_weight == 0:
            fail("pixel_weight", "> 0 when perceptual is 'none' (otherwise there is no loss)")
        if not isinstance(self.dilate_px, int) or self.dilate_px < 0:
            fail("dilate_px", "an integer >= 0")
        if not isinstance(self.resolution, int) or self.resolution < 8 or self.resolution & (self.resolution - 1):
            fail("resolution", "a power of two >= 8")
        if self.precision not in PRECISIONS:
            fail("precision", f"one of {PRECISIONS}")
        for name in ("patience", "segment_patience", "warm_start_steps", "warm_start_fine_steps", "joint_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                fail(name, "an integer >= 0")
        for name in ("warm_start_steps", "warm_start_fine_steps", "joint_steps"):
            if getattr(self, name) > MAX_STEPS:
                fail(name, f"at most {MAX_STEPS}")
        res = self.warm_start_resolution
        if not isinstance(res, int) or (res != 0 and (res < 8 or res & (res - 1))):
            fail("warm_start_resolution", "0 or a power of two >= 8")
        scale = self.joint_shared_scale
        if not isinstance(scale, int) or scale < 1 or scale & (scale - 1):
            fail("joint_shared_scale", "a power of two >= 1")
        scale = self.segment_shared_scale
        if not isinstance(scale, int) or scale < 0 or scale == 1 or scale & (scale - 1):
            fail("segment_shared_scale", "0 or a power of two >= 2")
        if scale == 2 and self.coarse_to_fine:
            fail("segment_shared_scale", ">= 4 with coarse_to_fine (its first steps render at half resolution)")
        if self.joint_steps and self.space == "w":
            fail("joint_steps", "0 in space 'w' (a W code has no rows to share between segments)")
        if not 0 <= self.full_render_fraction <= 1:
            fail("full_render_fraction", "in [0, 1]")

    def replace(self, **changes) -> InversionConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def whole(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in [low, high], or a clear error naming ``name`` (NaN, None, 2.5 and text refused)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise InvalidInputError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    return int(number)


PRESET_NAMES = ("preview", "balanced", "best")
# Chosen with `python -m chunky bench presets` and sweeps of warm-start length, steps and schedule (docs/speed.md).
# Every preset starts with a global warm start on L2 alone (as good as with LPIPS, cheaper), at 128 px
# unless it says otherwise.
_PRESETS = {
    # preview: one per-segment update at the full learning rate (no warm-up), then a step that only judges it;
    # that update fits only the rows above 64 px (at 256 px), so the blocks up to 64 px render once for all segments
    "preview": dict(
        steps=2,
        lr=0.05,
        lr_rampup=0.0,
        warm_start_steps=20,
        warm_start_resolution=64,
        warm_start_fine_steps=16,
        segment_shared_scale=4,
    ),
    "balanced": dict(
        steps=50,
        lr=0.05,
        lr_rampup=0.2,
        warm_start_steps=50,
        warm_start_resolution=64,
        warm_start_fine_steps=16,
        pixel_only_fraction=0.5,
        lpips_on_composite=True,
    ),
    "best": dict(steps=120, warm_start_steps=60, segment_patience=20),
}


def preset(name: str, **changes) -> InversionConfig:
    """A tuned recipe for `chunky.inversion.invert`: "preview" (under a minute on 2 CPU cores), "balanced"
    (about a third of the time of 150 steps from w_avg) or "best" (more accurate than 150 steps from w_avg,
    within the app's default 900 s limit on 2 CPU cores). All are W+, bf16, LPIPS-VGG + L2 at 256 px,
    rendered at the output size (``full_render_fraction``), after a warm start (see `InversionConfig`).
    ``changes`` override fields, e.g. ``preset("balanced", space="w")`` or ``preset("best", precision="fp32")``
    where bf16 is not faster (`chunky.device.choose_precision` measures it; `chunky.calibration.Estimates`
    gives the presets at the measured precision). The name is case-insensitive."""
    key = name.lower()
    if key not in _PRESETS:
        raise InvalidInputError(f"Unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}.")
    base = InversionConfig(
        space="w+", resolution=256, precision="bf16", warm_start_resolution=128, warm_start_perceptual=False
    )
    return base.replace(**_PRESETS[key]).replace(**changes)
