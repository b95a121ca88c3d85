"""Per-segment pivotal tuning: fine-tune a copy of the generator so that one segment's fixed code (the
pivot) reproduces that segment of the photo more closely.

As in PTI and the ChunkyGAN authors' tool: Adam at lr 3e-4 on every synthesis weight, loss = masked
LPIPS + masked L2, a few dozen steps. Only the tuned segment renders with its copy; the other segments
keep the shared generator, so pixels outside the segment's feathered mask do not change. A copy holds
the whole generator (about 120 MB at 1024 px in fp32), so tune the segments that need it, not all.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time

import torch
from torch import nn

from chunky.compositing import soft_composite
from chunky.device import autocast
from chunky.errors import InvalidInputError
from chunky.generator import Generator
from chunky.images import resize_images
from chunky.inversion import InversionResult, ProgressCallback, plan_passes, render_codes, select_rows, space_of
from chunky.losses import segment_losses
from chunky.segmentation import dilate_masks

MAX_TUNING_STEPS = 1000


def tune_segment(
    G: Generator,
    result: InversionResult,
    segment: int,
    *,
    steps: int = 40,
    lr: float = 3e-4,
    perceptual: nn.Module | None = None,
    progress: ProgressCallback | None = None,
) -> InversionResult:
    """Fine-tune a copy of the generator that renders ``segment`` (continuing from an earlier tuning of it).

    Args:
        G: the shared generator (not modified).
        result: an inversion (or a frozen edit); its codes stay fixed.
        segment: index (into ``result.masks``) of a projected segment.
        steps: Adam steps, 1..MAX_TUNING_STEPS.
        lr: Adam learning rate.
        perceptual: the LPIPS module (None: pixel loss only). The loss region, resolution, pixel weight,
            window and precision follow ``result.config``.
        progress: ``progress(step, total, {"loss", "seconds", "eta"})``; returning False stops early (the
            weights tuned so far are kept).

    Returns:
        ``result`` with ``generators[segment]`` set to the tuned copy and that segment's render, composite
        and losses updated; every other render is unchanged.
    """
    if segment not in result.projected:
        raise InvalidInputError(
            f"Segment {segment} is taken from the photo: there is no code to tune the generator for."
        )
    if not isinstance(steps, int) or not 1 <= steps <= MAX_TUNING_STEPS:
        raise InvalidInputError(f"Tuning steps must be an integer in [1, {MAX_TUNING_STEPS}], got {steps!r}.")
    if not lr > 0:
        raise InvalidInputError(f"The tuning learning rate must be > 0, got {lr!r}.")
    config = result.config
    space = space_of(result.codes)
    code = select_rows(result.codes, [result.projected.index(segment)])
    tuned = copy.deepcopy(result.generator_for(segment, G))
    weights = [p for name, p in tuned.named_parameters() if not name.startswith("style.")]  # synthesis only
    for p in weights:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(weights, lr=lr)

    device = result.target.device
    resolution = min(config.resolution, result.target.shape[-1])
    target = resize_images(result.target, resolution)
    region = resize_images(dilate_masks(result.masks[segment : segment + 1], config.dilate_px), resolution)
    (plan,) = plan_passes(tuned, [slice(0, 1)], target, region, perceptual, config)
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast(config.precision, device):
            render = render_codes(tuned, code, space, resolution, window=plan.window)
            loss = plan.losses(render, perceptual, config.pixel_weight)["total"].sum()
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InvalidInputError(f"The tuning loss became {value} at step {step + 1}; lower the learning rate.")
        if progress is not None:
            elapsed = time.perf_counter() - start
            info = {"loss": value, "seconds": elapsed, "eta": elapsed / (step + 1) * (steps - step - 1)}
            if progress(step + 1, steps, info) is False:
                break
    tuned.requires_grad_(False)
    return _with_tuned(result, segment, tuned, code, target, region, perceptual)


def _with_tuned(result, segment: int, tuned: Generator, code, target, region, perceptual) -> InversionResult:
    """``result`` with ``segment`` rendered by ``tuned`` (its render, losses at the optimisation resolution of
    ``target`` and ``region``, and the composite updated)."""
    config = result.config
    resolution = target.shape[-1]
    with torch.no_grad(), autocast(config.precision, result.target.device):
        renders = result.renders.clone()
        renders[segment] = render_codes(tuned, code, space_of(code), result.target.shape[-1])[0].float()
        full = segment_losses(
            resize_images(renders[segment : segment + 1], resolution),
            target,
            region,
            perceptual=perceptual,
            pixel_weight=config.pixel_weight,
        )
    losses = {name: values.clone() for name, values in result.segment_losses.items()}
    for name, values in losses.items():
        values[segment] = full[name][0].float().cpu()
    return dataclasses.replace(
        result,
        renders=renders,
        composite=soft_composite(
            renders, result.masks, result.target, keep=result.keep, dilate_px=result.config.dilate_px
        ),
        segment_losses=losses,
        generators={**result.generators, segment: tuned},
    )
