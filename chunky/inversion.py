"""Per-segment projection (the ChunkyGAN mechanism) and the global baseline.

All segment codes are optimised together as one batch: code i is rendered once per step and judged
only inside its own (dilated) region, so each code has few constraints to satisfy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from chunky.compositing import soft_composite
from chunky.config import InversionConfig
from chunky.device import autocast
from chunky.errors import InvalidInputError
from chunky.generator import Generator, StyleMix, Trunk, Window, window_margin
from chunky.images import resize_images
from chunky.losses import (
    build_perceptual,
    latent_regulariser,
    latent_spread,
    lpips_features,
    lpips_map,
    masked_mean,
    segment_losses,
)
from chunky.segmentation import dilate_masks

log = logging.getLogger(__name__)

# progress(step, total, info) -> optional False to cancel. info: {"loss": float, "seconds": float, "eta": float
# (seconds left, from the work left: each step weighted by the pixels it renders), "phase": str (`Phase.name`)}
ProgressCallback = Callable[[int, int, dict], "bool | None"]
Codes = torch.Tensor | list[torch.Tensor]


@dataclass
class InversionResult:
    """Everything needed to edit later without re-running.

    Attributes:
        codes: the projected segments' codes: W [P, style_dim], W+ [P, n_latent, style_dim], or S (a list
            of [P, C_l]); P = number of projected segments, in ``projected`` order.
        projected: indices (into ``masks``) of the projected segments.
        keep: indices of segments taken straight from the photo.
        masks: [K, 1, H, W] the segments.
        target: [1, 3, H, W] the photo in [-1, 1].
        renders: [K, 3, H, W] one render per segment at H (a kept segment's render is the photo).
        composite: [1, 3, H, W] the soft composite.
        segment_losses: {"lpips", "l2", "total"} -> [K] of ``renders`` area-downsampled to the
            optimisation resolution, inside each segment's loss region (0 for kept).
        loss: the sum of each segment's best loss in the last phase (regulariser included).
        history: total loss per step.
        seconds: wall time of the optimisation.
        steps_run: steps actually run (fewer on early stop or cancel).
        cancelled: the progress callback asked to stop.
        config: the settings used.
        generators: segment index -> the fine-tuned generator that renders it (pivotal tuning,
            `chunky.tuning`); every other segment renders with the shared generator.
        segment_steps: per projected segment, the per-segment steps it ran (fewer when it converged
            early, ``config.segment_patience``).
        passes: generator passes run (forward + backward; forward only in the last step of a stage, which only
            judges), the warm start's included.
    """

    codes: Codes
    projected: list[int]
    keep: list[int]
    masks: torch.Tensor
    target: torch.Tensor
    renders: torch.Tensor
    composite: torch.Tensor
    segment_losses: dict[str, torch.Tensor]
    loss: float
    history: list[float]
    seconds: float
    steps_run: int
    cancelled: bool
    config: InversionConfig
    generators: dict[int, Generator] = dataclasses.field(default_factory=dict)
    segment_steps: list[int] = dataclasses.field(default_factory=list)
    passes: int = 0

    def composite_of(
        self,
        renders: torch.Tensor,
        masks: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        keep: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """[1, 3, H, W] the soft composite of ``renders`` [K, 3, H, W] with this result's masks, target, kept
        segments and blending settings (each replaceable)."""
        return soft_composite(
            renders,
            self.masks if masks is None else masks,
            self.target if target is None else target,
            keep=self.keep if keep is None else keep,
            dilate_px=self.config.dilate_px,
        )

    def generator_for(self, segment: int, G: Generator) -> Generator:
        """The generator that renders ``segment``: its fine-tuned copy, else ``G``."""
        return self.generators.get(segment, G)


def learning_rate(step: int, total: int, config: InversionConfig) -> float:
    """Peak ``lr`` with a linear warm-up and a cosine ramp-down (the StyleGAN2 projector schedule)."""
    t = step / max(total, 1)
    ramp = min(1.0, (1.0 - t) / config.lr_rampdown) if config.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if config.lr_rampup > 0:
        ramp *= min(1.0, t / config.lr_rampup)
    return config.lr * ramp


@dataclass(frozen=True)
class Phase:
    """Consecutive optimisation steps that render and judge the codes the same way.

    Attributes:
        steps: how many steps.
        resolution: the loss is computed at this resolution.
        render_resolution: codes are rendered here and area-downsampled to ``resolution`` (the
            StyleGAN2-ADA projector's way, so that what is shown at this size is what was optimised).
        global_code: the warm start: one code judged on the union of the segments' loss regions.
        perceptual: whether the LPIPS term is on (else L2 only).
        joint: every segment's code in one render (`StyleMix`), judged on the union of the loss regions
            (``InversionConfig.joint_steps``).
        trunk_resolution: per-segment steps whose codes share the rows up to this resolution, rendered once
            (`chunky.generator.Trunk`; ``InversionConfig.segment_shared_scale``); 0: none shared.
    """

    steps: int
    resolution: int
    render_resolution: int
    global_code: bool = False
    perceptual: bool = True
    joint: bool = False
    trunk_resolution: int = 0

    @property
    def name(self) -> str:
        """What this phase does, for a progress display (the loss is not comparable across phases)."""
        what = "warm start, one code" if self.global_code else "all codes in one render" if self.joint else "fitting"
        judged = "LPIPS + L2" if self.perceptual else "L2 only"
        return f"{what}, {judged} at {self.resolution} px"

    @property
    def one_pass(self) -> bool:
        """Whether a step renders once for all segments (else once per segment)."""
        return self.global_code or self.joint


def schedule(config: InversionConfig, render_size: int, *, warm_start: bool = True) -> list[Phase]:
    """The phases an inversion with ``config`` runs for an output of ``render_size`` px: the warm start
    (``config.warm_start_steps``, then ``warm_start_fine_steps`` at ``resolution``) and the joint steps,
    then ``config.steps`` per-segment steps: the first half at half resolution with ``coarse_to_fine``; of
    the rest, the first ``pixel_only_fraction`` without LPIPS and the last ``full_render_fraction`` rendered
    at ``render_size``; with ``segment_shared_scale`` their codes share the rows up to ``resolution / scale``
    (`Phase.trunk_resolution`). Without the warm start (``warm_start`` False: one segment, or starting codes)
    the joint steps are per-segment steps too, and no rows are shared."""
    resolution = min(config.resolution, render_size)
    lpips = config.perceptual != "none"
    phases = []
    if warm_start:
        warm = min(config.warm_start_resolution or resolution, render_size)
        shared_lpips = lpips and config.warm_start_perceptual
        for steps, at in ((config.warm_start_steps, warm), (config.warm_start_fine_steps, resolution)):
            if steps:
                phases.append(Phase(steps, at, at, True, shared_lpips))
        if config.joint_steps:
            phases.append(Phase(config.joint_steps, resolution, resolution, perceptual=shared_lpips, joint=True))
    steps = config.steps if warm_start else config.steps + config.joint_steps
    shared_scale = config.segment_shared_scale if warm_start and config.space != "w" else 0
    trunk = resolution // shared_scale if shared_scale and resolution // shared_scale >= 8 else 0
    coarse = steps // 2 if config.coarse_to_fine else 0
    if coarse:
        half = max(8, resolution // 2)
        phases.append(Phase(coarse, half, half, perceptual=lpips, trunk_resolution=trunk))
    rest = steps - coarse  # each of these is pixel-only before step `pixel`, rendered at full size from `full`
    pixel = round(config.pixel_only_fraction * rest)
    full = rest - round(config.full_render_fraction * rest) if render_size > resolution else rest
    cuts = sorted({0, pixel, full, rest})
    for start, stop in zip(cuts, cuts[1:]):
        phases.append(
            Phase(
                stop - start,
                resolution,
                render_size if start >= full else resolution,
                perceptual=lpips and start >= pixel,
                trunk_resolution=trunk,
            )
        )
    return phases


LPIPS_WORK = 1.25  # a step with the LPIPS term costs this much more (8 segments at 256 px: 3.44 s against 2.72 s)


def phase_work(G: Generator, phase: Phase, loss_masks: torch.Tensor, config: InversionConfig) -> float:
    """Relative cost of one step of ``phase``, for the time left a progress report gives: the multiply-accumulates
    of its renders (`Generator.synthesis_macs`: one render for a warm-start or joint step, else one per segment of
    ``loss_masks`` [P, 1, H, W], on its window and above the trunk where it has them), times ``LPIPS_WORK`` with
    the LPIPS term. A 64 px warm-start step then counts about a third of a 256 px one, as it takes."""
    if phase.one_pass:
        macs = G.synthesis_macs(phase.render_resolution)
    else:
        masks = resize_images(loss_masks, phase.render_resolution)
        loss_scale = phase.render_resolution // phase.resolution
        windows = [_pass_window(G, mask[0], config, loss_scale, phase.trunk_resolution) for mask in masks]
        macs = sum(G.synthesis_macs(phase.render_resolution, phase.trunk_resolution, w) for w in windows)
    return macs * (LPIPS_WORK if phase.perceptual else 1.0)


def invert(
    G: Generator,
    target: torch.Tensor,
    masks: torch.Tensor | None = None,
    *,
    config: InversionConfig = InversionConfig(),
    keep: Sequence[int] = (),
    init: Codes | None = None,
    progress: ProgressCallback | None = None,
    perceptual: nn.Module | None | str = "auto",
    segments_per_pass: int | None = None,
) -> InversionResult:
    """Project ``target`` into ``G``, one code per segment (``masks``) or one for the whole image.

    Runs the phases of `schedule`: an optional warm start (one global code, then every segment starts
    from it), joint steps, then the per-segment steps (a converged segment stops: ``segment_patience``).

    Args:
        G: the generator (not modified).
        target: [1, 3, H, W] photo in [-1, 1]; H == W, a power of two <= G.size.
        masks: [K, 1, H, W] soft segment masks in [0, 1], or None for the global baseline (one code).
        config: settings (space, steps, losses, resolution, precision, seed, ...); `chunky.config.preset`
            gives tuned ones.
        keep: indices of segments not projected: their pixels come straight from the photo.
        init: starting codes for the projected segments (default: w_avg, or the warm start's code): W
            [P or 1, D] or W+ [P or 1, n_latent, D] (converted to S when ``config.space == "s"``), or S (a
            list). Given codes skip the warm start.
        progress: called after every step; returning False cancels (the best codes so far are kept).
        perceptual: a prebuilt LPIPS module (or None), to share between calls; "auto" builds
            ``config.perceptual`` with the pretrained backbone.
        segments_per_pass: how many segments share one generator pass (default: 1 on a CPU, all on a
            GPU). Only speed and memory depend on it, not the result.

    Returns:
        InversionResult with each segment's best codes seen in the last phase (lowest loss of its own).
    """
    target, masks, keep = _check_inputs(G, target, masks, keep)
    projected = [k for k in range(masks.shape[0]) if k not in keep]
    if perceptual == "auto":
        perceptual = build_perceptual(config.perceptual)
    render_size = target.shape[-1]
    phases = schedule(config, render_size, warm_start=init is None and len(projected) > 1)
    run = _Run(
        G,
        target,
        dilate_masks(masks[projected], config.dilate_px),
        config,
        perceptual,
        progress,
        phases,
    )
    codes = _initial_codes(G, config.space, 1 if phases[0].global_code else len(projected), init, target.device)
    warm = [p for p in phases if p.global_code]
    if warm:
        codes = _repeat(run.stage(codes, warm, segments_per_pass), len(projected))
    for phase in [p for p in phases if p.joint and not run.cancelled]:
        codes = run.joint_stage(codes, phase)
    if not run.cancelled and not all(p.one_pass for p in phases):
        codes = run.stage(codes, [p for p in phases if not p.one_pass], segments_per_pass)
    seconds = time.perf_counter() - run.start
    renders = _final_renders(G, codes, target, masks.shape[0], projected, config, segments_per_pass, run.trunk)
    return InversionResult(
        codes=codes,
        projected=projected,
        keep=list(keep),
        masks=masks,
        target=target,
        renders=renders,
        composite=soft_composite(renders, masks, target, keep=keep, dilate_px=config.dilate_px),
        loss=run.loss,
        segment_losses=run.displayed_losses(renders, projected),
        history=run.history,
        seconds=seconds,
        steps_run=run.steps_run,
        cancelled=run.cancelled,
        config=config,
        segment_steps=run.segment_steps,
        passes=run.passes,
    )


def _final_renders(
    G: Generator,
    codes: Codes,
    target: torch.Tensor,
    count: int,
    projected: list[int],
    config: InversionConfig,
    segments_per_pass: int | None,
    trunk: Trunk | None = None,
) -> torch.Tensor:
    """[count, 3, H, W]: each projected segment's render of its codes at the target's size (from ``trunk``, the
    lower blocks the codes share, when given); kept ones are the photo itself."""
    chunks = _chunks(len(projected), segments_per_pass or _default_segments_per_pass(target.device))
    size = target.shape[-1]
    with torch.no_grad(), autocast(config.precision, target.device):
        segment_renders = torch.cat(
            [render_codes(G, select_codes(codes, c), config.space, size, trunk=trunk).float() for c in chunks]
        )
    renders = target.expand(count, -1, -1, -1).clone()
    renders[projected] = segment_renders
    return renders


class _Run:
    """The state of one `invert` call across its stages: what the codes are compared with, the step
    count, history and progress reports."""

    def __init__(
        self,
        G: Generator,
        target: torch.Tensor,
        loss_masks: torch.Tensor,
        config: InversionConfig,
        perceptual: nn.Module | None,
        progress: ProgressCallback | None,
        phases: list[Phase],
    ):
        self.G, self.target, self.loss_masks, self.config = G, target, loss_masks, config
        self.perceptual, self.progress, self.total = perceptual, progress, sum(p.steps for p in phases)
        # the remaining time follows the work left (steps weighted by their cost), not the steps left
        self.work = {phase: phase_work(G, phase, loss_masks, config) for phase in phases}
        self.work_total, self.work_done = sum(p.steps * self.work[p] for p in phases), 0.0
        self.phase = phases[0]
        self.center = _initial_codes(G, config.space, 1, None, target.device)
        self.spread = latent_spread(G, config.space) if config.reg_weight > 0 else 1.0
        self.history: list[float] = []
        self.steps_run, self.passes, self.loss, self.cancelled = 0, 0, math.inf, False
        self.segment_steps = [0] * loss_masks.shape[0]
        self.trunk: Trunk | None = None
        self._target_features: dict = {}
        self.start = time.perf_counter()

    def stage(self, codes: Codes, phases: list[Phase], segments_per_pass: int | None) -> Codes:
        """Optimise ``codes`` through ``phases`` with one Adam optimiser and one learning-rate schedule;
        returns each code's best value in the last phase run."""
        trunk_resolution = phases[0].trunk_resolution
        codes, params = _fitted(self.G, codes, self.config.space, trunk_resolution)
        trunk = render_trunk(self.G, codes, self.config, trunk_resolution) if trunk_resolution else None
        self.trunk = trunk or self.trunk  # the final renders start from it too
        optimizer = torch.optim.Adam(params, lr=self.config.lr, betas=(0.9, 0.999))
        count, total, done = len(params[0]), sum(p.steps for p in phases), 0
        chunks = _chunks(count, segments_per_pass or _default_segments_per_pass(self.target.device))
        for phase in phases:
            masks = self.loss_masks.amax(dim=0, keepdim=True) if phase.global_code else self.loss_masks
            plans = plan_passes(
                self.G,
                chunks,
                resize_images(self.target, phase.render_resolution),
                resize_images(masks, phase.render_resolution),
                None if self._on_composite(phase) else self._perceptual(phase),
                self.config,
                loss_scale=phase.render_resolution // phase.resolution,
                trunk_resolution=trunk_resolution,
            )
            patience = 0 if phase.global_code else self.config.segment_patience
            best = _Best(codes, count, patience, self.config.min_delta)  # losses at other resolutions do not compare
            self.phase = phase
            for step in range(phase.steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(done + step, total, self.config)
                optimizer.zero_grad(set_to_none=True)
                before = _detach(codes)  # the losses below belong to these codes, not to the stepped ones
                if not phase.global_code:
                    self.segment_steps = [n + int(a) for n, a in zip(self.segment_steps, best.active)]
                judge_only = JUDGE_LAST_STEP_ONLY and phase is phases[-1] and step == phase.steps - 1
                losses = self._losses(codes, plans, phase, best, backward=not judge_only, trunk=trunk)
                if not judge_only:
                    optimizer.step()
                best.update(before, losses)
                best.restore_stopped(codes)
                if self._report(losses["objective"].sum(), best.total_since) or not best.active.any():
                    break
            self.work_total -= (phase.steps - step - 1) * self.work[phase]  # steps an early stop skipped
            done += phase.steps
            self.loss = float(best.loss.sum())
            if self.cancelled:
                break
        return best.codes

    def joint_stage(self, codes: Codes, phase: Phase) -> Codes:
        """Optimise every segment's code (W+ [P, n_latent, D] or S) through a joint ``phase``: one render per
        step (`StyleMix` of the loss regions), judged on their union, with the rows (layers) of
        `shared_layers` one code for all; returns the codes of the lowest loss seen."""
        G, config = self.G, self.config
        shared_count = shared_layers(G, phase.resolution, config.joint_shared_scale, config.space)
        if isinstance(codes, list):
            shared = [c.detach().mean(dim=0, keepdim=True) for c in codes[:shared_count]]
            own = [c.detach().clone() for c in codes[shared_count:]]
        else:
            shared = [codes.detach()[:, :shared_count].mean(dim=0, keepdim=True)]
            own = [codes.detach()[:, shared_count:].clone()]
        params = [*shared, *own]
        for p in params:
            p.requires_grad_(True)
        count = len(own[0])

        def assemble() -> Codes:
            if isinstance(codes, list):
                return [c.expand(count, -1) for c in shared] + own
            return torch.cat([shared[0].expand(count, -1, -1), own[0]], dim=1)

        optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999))
        masks = resize_images(self.loss_masks, phase.render_resolution)
        mix = StyleMix(masks)
        target = resize_images(self.target, phase.render_resolution)
        perceptual = self._perceptual(phase)
        # one pass judged on the union of the loss regions, as a warm-start step is
        (plan,) = plan_passes(G, [slice(0, count)], target, masks.amax(dim=0, keepdim=True), perceptual, config)
        self.phase = phase
        best_codes, best_loss, stalled = _detach(codes), math.inf, 0
        for step in range(phase.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, phase.steps, config)
            optimizer.zero_grad(set_to_none=True)
            judge_only = JUDGE_LAST_STEP_ONLY and step == phase.steps - 1
            with torch.set_grad_enabled(not judge_only):
                current = assemble()
                with autocast(config.precision, target.device):
                    render = render_codes(G, current, config.space, phase.render_resolution, mix=mix)
                    part = plan.losses(render, perceptual, config.pixel_weight)
                objective = part["total"].sum()
                if config.reg_weight > 0:
                    regulariser = latent_regulariser(current, self.center, self.spread).sum()
                    objective = objective + config.reg_weight * regulariser
            if not judge_only:
                objective.backward()
                optimizer.step()
            self.passes += 1
            value = float(objective.detach())
            if value < best_loss:
                stalled = 0 if value < best_loss * (1 - config.min_delta) else stalled + 1
                best_codes, best_loss = _detach(current), value
            else:
                stalled += 1
            if self._report(objective.detach(), stalled):
                self.work_total -= (phase.steps - step - 1) * self.work[phase]
                break
        self.loss = best_loss
        return best_codes

    def _perceptual(self, phase: Phase) -> nn.Module | None:
        return self.perceptual if phase.perceptual else None

    def _on_composite(self, phase: Phase) -> bool:
        """Whether ``phase``'s LPIPS term is judged on the composite (`InversionConfig.lpips_on_composite`)."""
        return self.config.lpips_on_composite and self._perceptual(phase) is not None and not phase.one_pass

    def _losses(
        self,
        codes: Codes,
        plans: list[Pass],
        phase: Phase,
        best: _Best,
        backward: bool = True,
        trunk: Trunk | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every running segment's loss (one pass per plan, from ``trunk`` when given, else from `LowerBlocks` of
        all of them where there are some), back-propagated unless ``backward`` is False; returns {"lpips", "l2",
        "total", "objective"} -> [P] (objective = total + regulariser; a stopped segment keeps its best values)."""
        losses = {name: values.clone() for name, values in best.values.items()}
        running = [plan for plan in plans if best.active[plan.chunk].any()]
        lower = None
        if trunk is None:
            with torch.set_grad_enabled(backward), autocast(self.config.precision, self.target.device):
                lower = LowerBlocks.render(self.G, codes, self.config.space, running, phase.render_resolution)
        if self._on_composite(phase):
            self._composite_losses(codes, running, phase, losses, backward, trunk, lower)
            return losses
        # Segment i's loss depends on code i only, so passes over groups of segments accumulate the exact
        # gradient; on a CPU small passes are faster than one big batch (less memory traffic).
        for plan in running:
            chunk_codes = select_codes(codes, plan.chunk)
            with torch.set_grad_enabled(backward):
                renders = self._render_pass(chunk_codes, plan, phase, trunk, lower)
                with autocast(self.config.precision, self.target.device):
                    part = plan.losses(renders, self._perceptual(phase), self.config.pixel_weight)
                objective = part["total"] + self._regulariser(chunk_codes)
            if backward:
                objective.sum().backward()
            self.passes += 1
            for name, values in (*part.items(), ("objective", objective)):
                losses[name][plan.chunk] = values.detach().float().cpu()
        if backward and lower is not None:
            lower.backward()
        return losses

    def _composite_losses(
        self,
        codes: Codes,
        running: list[Pass],
        phase: Phase,
        losses: dict[str, torch.Tensor],
        backward: bool,
        trunk: Trunk | None,
        lower: LowerBlocks | None,
    ) -> None:
        """`_losses` with the LPIPS term judged once on the composite of the running segments' renders (each
        inside its loss region, the photo where none is: `composite_at`) instead of once per pass; each segment's
        term is the mean of that distance map over its loss region. Writes into ``losses``; back-propagates the
        sum of every running segment's objective once, unless ``backward`` is False."""
        config, size = self.config, phase.resolution
        target = resize_images(self.target, size)
        masks = resize_images(self.loss_masks, size)
        pieces, parts = [], []
        with torch.set_grad_enabled(backward):
            for plan in running:
                chunk_codes = select_codes(codes, plan.chunk)
                renders = self._render_pass(chunk_codes, plan, phase, trunk, lower)
                renders = F.avg_pool2d(renders, plan.loss_scale) if plan.loss_scale > 1 else renders
                renders = renders.float()
                l2 = masked_mean((renders - plan.target.float()).square(), plan.masks)
                parts.append((plan, l2, self._regulariser(chunk_codes)))
                pieces.append((plan.window, renders, plan.masks))
                self.passes += 1
            with autocast(config.precision, target.device):
                lpips_values = lpips_of_composite(
                    self.perceptual, composite_at(pieces, target), self._target_features_at(size), masks
                )
            objective_sum = 0
            for plan, l2, regulariser in parts:
                lpips_value = lpips_values[plan.chunk]
                total = lpips_value + config.pixel_weight * l2
                objective = total + regulariser
                objective_sum = objective_sum + objective.sum()
                for name, values in (("lpips", lpips_value), ("l2", l2), ("total", total), ("objective", objective)):
                    losses[name][plan.chunk] = values.detach().float().cpu()
        if backward:
            objective_sum.backward()
            if lower is not None:
                lower.backward()

    def _render_pass(
        self, chunk_codes: Codes, plan: Pass, phase: Phase, trunk: Trunk | None, lower: LowerBlocks | None
    ) -> torch.Tensor:
        """[P, 3, h, w]: one pass's renders of ``chunk_codes`` at ``phase``'s render resolution (its window where it
        has one), from ``trunk`` or its rows of ``lower`` where given, under the run's autocast."""
        with autocast(self.config.precision, self.target.device):
            return render_codes(
                self.G,
                chunk_codes,
                self.config.space,
                phase.render_resolution,
                window=plan.window,
                trunk=trunk if lower is None else lower.of(plan.chunk),
            )

    def _regulariser(self, chunk_codes: Codes) -> torch.Tensor | float:
        """[P]: ``reg_weight`` times the pull of ``chunk_codes`` toward the mean code (0 without one)."""
        if self.config.reg_weight <= 0:
            return 0.0
        return self.config.reg_weight * latent_regulariser(chunk_codes, self.center, self.spread)

    def _target_features_at(self, size: int) -> list[torch.Tensor]:
        """The photo's LPIPS features at ``size`` px (computed once per run and size)."""
        if size not in self._target_features:
            with torch.no_grad(), autocast(self.config.precision, self.target.device):
                target = resize_images(self.target, size)
                self._target_features[size] = lpips_features(self.perceptual, target)
        return self._target_features[size]

    def _report(self, total: torch.Tensor, stalled: int) -> bool:
        """Record a step; True when the run or this phase should end (cancelled, or no improvement for
        ``config.patience`` steps: ``stalled`` is the steps since the last)."""
        self.steps_run += 1
        value = float(total)
        if not math.isfinite(value):
            raise InvalidInputError(
                f"The loss became {value} at step {self.steps_run}; lower config.lr or use precision='fp32'."
            )
        self.history.append(value)
        self.work_done += self.work[self.phase]
        if self.progress is not None:
            elapsed = time.perf_counter() - self.start
            eta = elapsed * max(0.0, self.work_total - self.work_done) / self.work_done
            info = {"loss": value, "seconds": elapsed, "eta": eta, "phase": self.phase.name}
            if self.progress(self.steps_run, self.total, info) is False:
                self.cancelled = True
                return True
        patience = self.config.patience
        if patience and stalled >= patience:
            log.info(
                "early stop after %d steps: no %.1e relative improvement in %d steps",
                self.steps_run,
                self.config.min_delta,
                patience,
            )
            return True
        return False

    def displayed_losses(self, renders: torch.Tensor, projected: list[int]) -> dict[str, torch.Tensor]:
        """{"lpips", "l2", "total"} -> [K] of the renders that are shown (area-downsampled to the optimisation
        resolution, inside each segment's loss region); 0 for kept segments."""
        resolution = min(self.config.resolution, renders.shape[-1])
        shown = resize_images(renders[projected], resolution)
        target = resize_images(self.target, resolution)
        masks = resize_images(self.loss_masks, resolution)
        on_composite = self.config.lpips_on_composite and self.perceptual is not None
        with torch.no_grad(), autocast(self.config.precision, self.target.device):
            part = segment_losses(
                shown,
                target,
                masks,
                perceptual=None if on_composite else self.perceptual,
                pixel_weight=self.config.pixel_weight,
            )
            if on_composite:  # as the per-segment steps judged it
                composite = composite_at([(None, shown, masks)], target)
                features = self._target_features_at(resolution)
                lpips_value = lpips_of_composite(self.perceptual, composite, features, masks)
                part = {
                    "lpips": lpips_value,
                    "l2": part["l2"],
                    "total": lpips_value + self.config.pixel_weight * part["l2"],
                }
        out = {name: torch.zeros(renders.shape[0]) for name in part}
        for name, values in part.items():
            out[name][projected] = values.float().cpu()
        return out


# The blocks up to this resolution run in one batch for all the segments of a step's passes (below it the
# features are small and a pass's time is mostly per-operation overhead): with 8 segments at 256 px (bf16, 2
# Xeon cores) their forward and backward took 0.33 s one segment at a time and 0.13 s in one batch, out of
# 1.07 s for the whole step; up to 64 px, 0.69 s and 0.63 s.
LOWER_BLOCKS_PX = 32


@dataclass
class LowerBlocks:
    """The synthesis blocks up to ``rendered.resolution`` px rendered in one batch for the segments of several
    passes, each of which continues from its own rows (`of`). Each pass back-propagates to its own cut (its rows
    of the batch's output, detached); `backward` then takes the gradients gathered there through the batch once.

    Attributes:
        rendered: the batch's output ([N, C, r, r] features, [N, 3, r/2, r/2] RGB), in the autograd graph.
        cuts: a pass's chunk start -> its rows of ``rendered``, detached (leaves that collect the pass's
            gradients when ``rendered`` has any), in the batch's order. One leaf per pass, not slices of one:
            a slice's gradient is a zero-filled tensor of the whole batch, added up once per pass (measured
            9 ms a pass at [8, 512, 32, 32], bf16, 2 Xeon cores).
    """

    rendered: Trunk
    cuts: dict[int, Trunk]

    @classmethod
    def render(
        cls, G: Generator, codes: Codes, space: str, plans: list[Pass], render_resolution: int
    ) -> LowerBlocks | None:
        """The lower blocks of the segments of ``plans`` (at least two passes), up to `LOWER_BLOCKS_PX` and no
        higher than any pass's window starts or half ``render_resolution``; None where that leaves no block."""
        limits = [LOWER_BLOCKS_PX, render_resolution // 2]
        limits += [plan.window.resolution for plan in plans if plan.window is not None]
        resolution = min(limits)
        if len(plans) < 2 or resolution < 8:
            return None
        segments = [i for plan in plans for i in range(plan.chunk.start, plan.chunk.stop)]
        chosen = select_rows(codes, segments)
        styles = chosen[: G.num_styles_at(resolution)] if space == "s" else G.styles(chosen, resolution)
        rendered = G.trunk(styles, resolution)
        cuts, row = {}, 0
        for plan in plans:
            rows = slice(row, row + plan.chunk.stop - plan.chunk.start)
            skip = None if rendered.skip is None else _leaf(rendered.skip[rows])
            cuts[plan.chunk.start] = Trunk(rendered.blocks, _leaf(rendered.features[rows]), skip)
            row = rows.stop
        return cls(rendered, cuts)

    def of(self, chunk: slice) -> Trunk:
        """The rows of the segments ``chunk`` (a pass's), as a `Trunk` for `render_codes`."""
        return self.cuts[chunk.start]

    def backward(self) -> None:
        """Back-propagate the gradients the passes left at their cuts through the batch (once for all of them);
        a pass that left none there (it did not run, or its loss did not reach its rows) contributes zeros."""
        cuts = list(self.cuts.values())
        outputs, grads = [], []
        for out, leaves in (
            (self.rendered.features, [cut.features for cut in cuts]),
            (self.rendered.skip, [cut.skip for cut in cuts]),
        ):
            if out is None or all(leaf.grad is None for leaf in leaves):
                continue
            outputs.append(out)
            grads.append(torch.cat([torch.zeros_like(leaf) if leaf.grad is None else leaf.grad for leaf in leaves]))
        if outputs:
            torch.autograd.backward(outputs, grads)


def composite_at(pieces: list[tuple[Window | None, torch.Tensor, torch.Tensor]], photo: torch.Tensor) -> torch.Tensor:
    """[1, 3, R, R]: renders composited over ``photo`` [1, 3, R, R]. ``pieces`` are (window, renders [P, 3, h, w],
    loss regions [P, 1, h, w]), each at R px: the whole image where the window is None, else that window of it.
    Where regions overlap their renders are averaged by weight; where they cover less than 1 the photo fills in."""
    size = photo.shape[-1]
    painted = torch.zeros_like(photo)
    coverage = torch.zeros_like(photo[:, :1])
    for window, renders, regions in pieces:
        paint = (renders * regions).sum(dim=0, keepdim=True)
        weight = regions.sum(dim=0, keepdim=True)
        if window is not None:
            scale = size // window.resolution
            top, left = window.top * scale, window.left * scale
            bottom, right = size - top - window.height * scale, size - left - window.width * scale
            paint, weight = F.pad(paint, (left, right, top, bottom)), F.pad(weight, (left, right, top, bottom))
        painted = painted + paint
        coverage = coverage + weight
    return (painted + photo * (1 - coverage).clamp(min=0)) / coverage.clamp(min=1)


def lpips_of_composite(
    perceptual: nn.Module, composite: torch.Tensor, target_features: list[torch.Tensor], regions: torch.Tensor
) -> torch.Tensor:
    """[K] float32: the mean over each loss region ``regions`` [K, 1, R, R] of one LPIPS distance map of
    ``composite`` [1, 3, R, R] against the photo whose `lpips_features` are ``target_features``."""
    size = tuple(composite.shape[-2:])
    distance = lpips_map(perceptual, lpips_features(perceptual, composite), target_features, size).float()
    return masked_mean(distance.expand(len(regions), -1, -1, -1), regions)


def _leaf(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` cut from the autograd graph; a leaf that collects gradients where ``tensor`` had a graph."""
    return tensor.detach().requires_grad_(tensor.requires_grad)


class _Best:
    """Each code's best value and losses within a phase, and which codes still run (per-segment
    convergence: a code whose loss has not improved by ``min_delta`` for ``patience`` steps stops)."""

    def __init__(self, codes: Codes, count: int, patience: int, min_delta: float):
        self.codes, self.patience, self.min_delta = _detach(codes), patience, min_delta
        self.values = {name: torch.full((count,), math.inf) for name in ("lpips", "l2", "total", "objective")}
        self.since = torch.zeros(count, dtype=torch.long)
        self.active = torch.ones(count, dtype=torch.bool)
        self.best_total, self.total_since = math.inf, 0

    @property
    def loss(self) -> torch.Tensor:
        return self.values["objective"]

    def update(self, before: Codes, losses: dict[str, torch.Tensor]) -> None:
        objective = losses["objective"]
        improved = objective < self.loss * (1 - self.min_delta)
        rows = torch.nonzero(objective < self.loss).flatten().tolist()
        if rows:
            self.codes = replace_rows(self.codes, rows, select_rows(before, rows))
            for name, values in self.values.items():
                values[rows] = losses[name][rows]
        self.since = torch.where(improved, 0, self.since + 1)
        if self.patience:
            self.active &= self.since < self.patience
        total = float(objective.sum())
        self.total_since = 0 if total < self.best_total * (1 - self.min_delta) else self.total_since + 1
        self.best_total = min(self.best_total, total)

    def restore_stopped(self, codes: Codes) -> None:
        """Put the best values back into the stopped rows of ``codes`` (Adam's momentum would move them)."""
        rows = torch.nonzero(~self.active).flatten().tolist()
        if rows:
            with torch.no_grad():
                for layer, source in zip(codes, self.codes) if isinstance(codes, list) else [(codes, self.codes)]:
                    layer[rows] = source[rows]


def reproject(
    G: Generator,
    result: InversionResult,
    segments: Sequence[int],
    *,
    config: InversionConfig | None = None,
    progress: ProgressCallback | None = None,
    perceptual: nn.Module | None | str = "auto",
) -> InversionResult:
    """Re-project ``segments`` of ``result`` against its target, each starting from its current code (the
    incremental step after a freeze: the frozen composite is the target, and the chosen segments' codes
    adapt to it). Every other segment keeps its code and render.

    Args:
        segments: indices (into ``result.masks``) of projected segments.
        config: settings (default: the result's); the space always follows the current codes.

    Returns:
        InversionResult with the chosen segments' codes, renders and losses replaced; pixels outside the
        union of their feathered masks equal ``result.composite``.
    """
    chosen = sorted(set(int(k) for k in segments))
    if not chosen:
        raise InvalidInputError("Choose at least one segment to re-project.")
    not_projected = [k for k in chosen if k not in result.projected]
    if not_projected:
        raise InvalidInputError(f"Segments {not_projected} are taken from the photo and have no code to re-project.")
    config = (config or result.config).replace(space=space_of(result.codes))
    groups: dict[int, list[int]] = {}  # segments with the same generator (a fine-tuned one has its own) go together
    for k in chosen:
        groups.setdefault(id(result.generator_for(k, G)), []).append(k)
    codes, renders = result.codes, result.renders.clone()
    losses = {name: values.clone() for name, values in result.segment_losses.items()}
    parts = []
    for group in groups.values():
        rows = [result.projected.index(k) for k in group]
        others = [k for k in range(result.masks.shape[0]) if k not in group]
        part = invert(
            result.generator_for(group[0], G),
            result.target,
            result.masks,
            config=config,
            keep=others,
            init=select_rows(codes, rows),
            progress=progress,
            perceptual=perceptual,
        )
        codes = replace_rows(codes, rows, part.codes)
        renders[group] = part.renders[group]
        for name, values in losses.items():
            values[group] = part.segment_losses[name][group]
        parts.append(part)
        if part.cancelled:
            break
    return dataclasses.replace(
        result,
        codes=codes,
        renders=renders,
        composite=result.composite_of(renders),
        segment_losses=losses,
        loss=sum(p.loss for p in parts),
        history=[sum(step) for step in zip(*(p.history for p in parts))],
        seconds=sum(p.seconds for p in parts),
        steps_run=max(p.steps_run for p in parts),
        cancelled=any(p.cancelled for p in parts),
        config=config,
    )


def space_of(codes: Codes) -> str:
    """ "w", "w+" or "s": the latent space ``codes`` live in."""
    return "s" if isinstance(codes, list) else ("w+" if codes.ndim == 3 else "w")


# ------------------------------------------------------------------------------------ helpers
def _check_inputs(G: Generator, target, masks, keep) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    if not isinstance(target, torch.Tensor) or target.ndim != 4 or target.shape[:2] != (1, 3):
        shape = list(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise InvalidInputError(f"target must be a [1, 3, H, W] tensor in [-1, 1], got {shape}.")
    size = target.shape[-1]
    if target.shape[-2] != size or size < 8 or size & (size - 1) or size > G.size:
        raise InvalidInputError(
            f"target must be square with a power-of-two side in [8, {G.size}], got {list(target.shape[-2:])}."
        )
    if not torch.isfinite(target).all():
        raise InvalidInputError("target contains NaN or infinite values.")
    target = target.float()
    if masks is None:
        if keep:
            raise InvalidInputError("keep needs masks: the global baseline has a single segment.")
        return target, torch.ones(1, 1, size, size, device=target.device), []
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] < 1:
        shape = list(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise InvalidInputError(f"masks must be a [K, 1, H, W] tensor, got {shape}.")
    if masks.shape[-2:] != target.shape[-2:]:
        raise InvalidInputError(
            f"masks are {list(masks.shape[-2:])} but target is {list(target.shape[-2:])}; they must match."
        )
    if not torch.isfinite(masks).all() or masks.min() < 0 or masks.max() > 1:
        raise InvalidInputError("masks must hold finite values in [0, 1].")
    empty = [k for k in range(masks.shape[0]) if masks[k].max() == 0]
    if empty:
        raise InvalidInputError(f"masks {empty} are empty; drop them or paint them before inverting.")
    keep = sorted(set(int(k) for k in keep))
    if any(not 0 <= k < masks.shape[0] for k in keep):
        raise InvalidInputError(f"keep holds indices outside [0, {masks.shape[0] - 1}]: {keep}.")
    if len(keep) == masks.shape[0]:
        raise InvalidInputError("keep lists every segment: there is nothing to project.")
    return target, masks.float().to(target.device), keep


def _initial_codes(G: Generator, space: str, count: int, init: Codes | None, device) -> Codes:
    w = G.w_avg.to(device) if init is None else None
    if space == "s":
        if isinstance(init, list):
            styles = init
        else:
            start = w if init is None else init.to(device)
            styles = G.styles(start.float())
        return [_broadcast(s.detach().float(), count, f"init style {i}").clone() for i, s in enumerate(styles)]
    if init is None:
        code = w if space == "w" else w[:, None].expand(-1, G.n_latent, -1)
    else:
        code = init.to(device).float()
        expected = (G.style_dim,) if space == "w" else (G.n_latent, G.style_dim)
        if space == "w+" and code.shape[1:] == (G.style_dim,):
            code = code[:, None].expand(-1, G.n_latent, -1)
        if code.shape[1:] != expected:
            raise InvalidInputError(
                f"init for space {space!r} must be [P, {', '.join(map(str, expected))}], got {list(code.shape)}."
            )
    return _broadcast(code.detach(), count, "init").clone()


def _broadcast(code: torch.Tensor, count: int, name: str) -> torch.Tensor:
    if code.shape[0] == count:
        return code
    if code.shape[0] == 1:
        return code.expand(count, *code.shape[1:])
    raise InvalidInputError(f"{name} holds {code.shape[0]} codes but {count} segments are projected.")


def render_codes(
    G: Generator,
    codes: Codes,
    space: str,
    resolution: int,
    window: Window | None = None,
    mix: StyleMix | None = None,
    trunk: Trunk | None = None,
) -> torch.Tensor:
    """[P, 3, R, R] renders of W [P, D], W+ [P, n_latent, D] or S (list of [P, C_l]) codes at ``resolution``
    (only ``window`` of it when given; with ``mix``, one [1, 3, R, R] render of all of them; from ``trunk``,
    the blocks below rendered once for codes that share those rows, when given)."""
    if space == "s":
        styles = codes[: G.num_styles_at(resolution)]
        return G.synthesis_from_styles(styles, resolution=resolution, window=window, mix=mix, trunk=trunk)
    return G.synthesis(codes, resolution=resolution, window=window, mix=mix, trunk=trunk)


def render_trunk(G: Generator, codes: Codes, config: InversionConfig, resolution: int) -> Trunk:
    """The blocks up to ``resolution`` px rendered once, without gradients, for the first of ``codes`` (W+ or
    S, whose rows or layers there every code shares: `_fitted`)."""
    first = select_codes(codes, slice(0, 1))
    with torch.no_grad(), autocast(config.precision, G.w_avg.device):
        styles = first if config.space == "s" else G.styles(first)
        return G.trunk(styles, resolution)


def _fitted(G: Generator, codes: Codes, space: str, trunk_resolution: int) -> tuple[Codes, list[torch.Tensor]]:
    """A copy of ``codes`` to optimise, and the tensors to give the optimiser. With ``trunk_resolution``, the W+
    rows (S layers) used only up to there become one code (the segments' mean where they differ, after joint
    steps; usually they all start from one), which is not fitted: in S those layers are left out of the
    optimiser; in W+ a gradient hook zeroes their rows, so Adam, whose state starts at zero, leaves them exactly
    as they are."""
    codes = _detach(codes)
    shared = shared_layers(G, trunk_resolution, 1, space) if trunk_resolution else 0
    if isinstance(codes, list):
        for layer in codes[:shared]:
            layer[:] = _one_code(layer)
        params = codes[shared:]
    else:
        if shared:
            codes[:, :shared] = _one_code(codes[:, :shared])
        params = [codes]
    for p in params:
        p.requires_grad_(True)
    if shared and not isinstance(codes, list):
        fitted_rows = torch.ones(1, codes.shape[1], 1, dtype=codes.dtype, device=codes.device)
        fitted_rows[:, :shared] = 0
        codes.register_hook(lambda grad: grad * fitted_rows)
    return codes, params


def shared_layers(G: Generator, resolution: int, shared_scale: int, space: str) -> int:
    """How many leading W+ rows (``space`` "w+") or S layers ("s") the joint steps share between segments: those
    used only by layers of at most ``resolution / shared_scale`` px."""
    limit = resolution // shared_scale
    layers = G.modulated_layers(None)  # (W+ row, layer), in rendering order: 4 px, 4 px, then 3 per block
    sizes = [4, 4] + [8 << (i // 3) for i in range(len(layers) - 2)]
    if space == "s":
        return sum(1 for size in sizes if size <= limit)
    largest = {}
    for (row, _), size in zip(layers, sizes):
        largest[row] = max(largest.get(row, 0), size)
    return sum(1 for row in range(G.n_latent) if largest[row] <= limit)


# A stage returns the best codes it judged, never the codes its last step's update makes: so that step only
# judges (a forward pass without gradients). False steps there too, for a test that the result is the same.
JUDGE_LAST_STEP_ONLY = True
# A windowed segment runs the last 2, 3 or 4 synthesis blocks on its window only, whichever costs the fewest
# multiply-accumulates: starting lower saves the full-size blocks below but widens the margin above.
WINDOW_BLOCKS = (2, 3, 4)
WINDOW_MAX_SHARE = 0.75  # a window covering more of the image than this is not worth it
WINDOW_MIN_PX = 32  # LPIPS backbones (AlexNet's strided pooling) need at least this many pixels


@dataclass
class Pass:
    """One generator pass of an optimisation step: which segments, and what they are compared with."""

    chunk: slice
    window: Window | None
    target: torch.Tensor  # [1, 3, h, w] at the loss resolution
    masks: torch.Tensor  # [P, 1, h, w] at the loss resolution
    features: list[torch.Tensor] | None
    loss_scale: int = 1  # renders are area-downsampled by this factor for the loss

    def losses(
        self, renders: torch.Tensor, perceptual: nn.Module | None, pixel_weight: float
    ) -> dict[str, torch.Tensor]:
        """`segment_losses` of ``renders`` [P, 3, H, W] (this pass's render: its window when it has one, at the
        render resolution) against this pass's target and loss masks: {"lpips", "l2", "total"} -> [P]."""
        if self.loss_scale > 1:
            renders = F.avg_pool2d(renders, self.loss_scale)
        return segment_losses(
            renders,
            self.target,
            self.masks,
            perceptual=perceptual,
            pixel_weight=pixel_weight,
            target_features=self.features,
        )


def plan_passes(
    G: Generator,
    chunks: list[slice],
    target: torch.Tensor,
    masks: torch.Tensor,
    perceptual: nn.Module | None,
    config: InversionConfig,
    *,
    loss_scale: int = 1,
    trunk_resolution: int = 0,
) -> list[Pass]:
    """One `Pass` per chunk of segments: a single segment gets its window (`_pass_window`: when
    ``config.window_segments`` and one is cheaper for ``G`` than the whole image), with the target and loss masks
    cropped to it and the target's LPIPS features (computed once for all the passes without a window).
    ``target`` and ``masks`` are at the render resolution; the loss is computed ``loss_scale`` times lower."""
    plans = []
    whole_target_features = None
    for chunk in chunks:
        single = chunk.stop - chunk.start == 1
        window = _pass_window(G, masks[chunk][0, 0], config, loss_scale, trunk_resolution) if single else None
        t, m = target, masks[chunk]
        if window is not None:
            scale = target.shape[-1] // window.resolution
            t, m = window.crop(target, scale), window.crop(m, scale)
        if loss_scale > 1:
            t, m = F.avg_pool2d(t, loss_scale), F.avg_pool2d(m, loss_scale)
        if perceptual is None:
            features = None
        elif window is None and whole_target_features is not None:
            features = whole_target_features
        else:
            with torch.no_grad(), autocast(config.precision, target.device):
                features = lpips_features(perceptual, t)
            if window is None:
                whole_target_features = features
        plans.append(Pass(chunk, window, t, m, features, loss_scale))
    return plans


def _pass_window(
    G: Generator, mask: torch.Tensor, config: InversionConfig, loss_scale: int, trunk_resolution: int
) -> Window | None:
    """The window of a pass of one segment (loss region ``mask`` [R, R]) when ``config.window_segments``: of the
    `_segment_window` starting 2, 3 or 4 blocks below R (`WINDOW_BLOCKS`), the one whose render costs ``G`` the
    fewest multiply-accumulates (`Generator.synthesis_macs`), leaving out those starting below the trunk or
    whose size at R px does not divide by ``loss_scale``; None where no window is cheaper than the whole image."""
    if not config.window_segments:
        return None
    size = mask.shape[-1]
    best, best_macs = None, G.synthesis_macs(size, trunk_resolution)
    for blocks in WINDOW_BLOCKS:
        window = _segment_window(mask, blocks, loss_scale)
        if window is None or window.resolution < trunk_resolution:
            continue
        scale = size // window.resolution
        if (window.height * scale) % loss_scale or (window.width * scale) % loss_scale:
            continue
        macs = G.synthesis_macs(size, trunk_resolution, window)
        if macs < best_macs:
            best, best_macs = window, macs
    return best


def _segment_window(mask: torch.Tensor, blocks: int, loss_scale: int = 1) -> Window | None:
    """The window, from ``blocks`` blocks below the resolution R of ``mask`` [R, R] (a segment's loss region), that
    holds the region plus the margin where a windowed render may differ from the full one (at least
    ``WINDOW_MIN_PX`` once downsampled by ``loss_scale``), or None when it would cover most of the image."""
    size = mask.shape[-1]
    coarse = size >> blocks
    if coarse < 8:
        return None
    scale, margin = size // coarse, window_margin(blocks)
    rows, cols = torch.nonzero(mask.amax(dim=1) > 0).flatten(), torch.nonzero(mask.amax(dim=0) > 0).flatten()
    if len(rows) == 0:  # an empty segment (all of it sketched away): nothing to frame
        return None
    top, left = max(0, int(rows[0]) - margin) // scale, max(0, int(cols[0]) - margin) // scale
    bottom = -(-min(size, int(rows[-1]) + 1 + margin) // scale)
    right = -(-min(size, int(cols[-1]) + 1 + margin) // scale)
    least = -(-WINDOW_MIN_PX * loss_scale // scale)
    top, bottom = _at_least(top, bottom, least, coarse)
    left, right = _at_least(left, right, least, coarse)
    if (bottom - top) * (right - left) > WINDOW_MAX_SHARE * coarse * coarse:
        return None
    return Window(coarse, top, left, bottom - top, right - left)


def _at_least(start: int, stop: int, length: int, limit: int) -> tuple[int, int]:
    """Grow [start, stop) to ``length`` (within [0, limit]), keeping it centred where possible."""
    grow = max(0, length - (stop - start))
    start = max(0, start - grow // 2)
    stop = min(limit, max(stop, start + length))
    return max(0, stop - length) if stop - start < length else start, stop


def _default_segments_per_pass(device: torch.device) -> int:
    # Measured on a 2-core CPU, 8 segments at 256 px: one pass per segment is 1.5x faster than one batch.
    return 1 if device.type == "cpu" else 1 << 30


def _repeat(codes: Codes, count: int) -> Codes:
    """One code (W [1, D], W+ [1, n_latent, D] or S) repeated for ``count`` segments."""
    if isinstance(codes, list):
        return [c.expand(count, *c.shape[1:]).clone() for c in codes]
    return codes.expand(count, *codes.shape[1:]).clone()


def _chunks(count: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, count)) for start in range(0, count, max(1, size))]


def select_codes(codes: Codes, chunk: slice) -> Codes:
    """The codes of segments ``chunk`` (a view: gradients reach the full codes)."""
    return [c[chunk] for c in codes] if isinstance(codes, list) else codes[chunk]


def replace_rows(codes: Codes, rows: Sequence[int], new: Codes) -> Codes:
    """A copy of ``codes`` whose rows ``rows`` are the rows of ``new`` (one per entry of ``rows``, same space)."""
    out = _detach(codes)
    for layer, source in zip(out, new) if isinstance(out, list) else [(out, new)]:
        layer[list(rows)] = source.detach().to(layer)
    return out


def select_rows(codes: Codes, rows: Sequence[int]) -> Codes:
    """The codes of segments ``rows`` (a copy, in the same space)."""
    rows = list(rows)
    return [c[rows] for c in codes] if isinstance(codes, list) else codes[rows]


def _one_code(rows: torch.Tensor) -> torch.Tensor:
    """[1, ...]: the first of ``rows`` [P, ...] where all are equal (exactly), else their mean."""
    return rows[:1] if torch.equal(rows, rows[:1].expand_as(rows)) else rows.mean(dim=0, keepdim=True)


def _detach(codes: Codes) -> Codes:
    return [c.detach().clone() for c in codes] if isinstance(codes, list) else codes.detach().clone()
