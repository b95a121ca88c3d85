"""This device's inversion speed, measured once (at start-up), for honest time estimates of each preset.

`calibrate` runs three steps of every kind of phase the given configs use (warm start, per-segment steps at
each resolution) on the average FFHQ face layout, and times the second; `Rates.estimate_seconds` adds
them up for a config. Per-segment convergence can only make a run shorter, so estimates are upper
bounds of the optimisation (plus the final render). `Estimates` first chooses the precision for the device
(`chunky.device.choose_precision`) and whether the layers' elementwise tails run compiled
(`chunky.device.choose_fusion`), then times the presets so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from chunky.config import InversionConfig
from chunky.device import FusionChoice, PrecisionChoice, choose_fusion, choose_precision
from chunky.generator import Generator
from chunky.inversion import Phase, invert, schedule

log = logging.getLogger(__name__)
FUSION_ENV = "CHUNKY_FUSION"  # "off": the layer tails stay op by op (no compiling); "auto" (default): measured
PhaseKind = tuple[bool, bool, int, int, bool, int]  # global code, joint, loss and render px, perceptual, trunk px


def face_layout_masks(size: int) -> torch.Tensor:
    """The 8 segments of an average FFHQ-aligned face (skin, brows, eyes, nose, mouth, hair, neck,
    background; `LayoutParser`) as [8, 1, size, size] masks: the scene speed is measured on."""
    from chunky.segmentation import LayoutParser, Segmentation

    labels = LayoutParser().parse(np.zeros((size, size, 3), np.uint8))
    return Segmentation.from_parsing(labels, min_fraction=0).masks


def phase_kind(phase: Phase) -> PhaseKind:
    return (
        phase.global_code,
        phase.joint,
        phase.resolution,
        phase.render_resolution,
        phase.perceptual,
        phase.trunk_resolution,
    )


@dataclass(frozen=True)
class Rates:
    """Seconds on this device, measured on the face layout.

    Attributes:
        per_step: phase kind -> seconds of one warm-start step (global code) or of one segment's step
            (the mean over the face layout's segments, windows included).
        overhead: phase kind -> seconds per segment outside the steps of a run whose last phase is of
            that kind (the target's features, the first step's set-up, the final render and losses), less
            what its last step saves by only judging (so it can be below 0 on a small model).
    """

    per_step: dict[PhaseKind, float]
    overhead: dict[PhaseKind, float]

    def estimate_seconds(self, config: InversionConfig, segments: int, size: int) -> float:
        """Expected wall time of ``invert`` with ``config`` for ``segments`` projected segments and a
        ``size`` px target (at most this: segments that converge early stop costing time).

        Raises:
            KeyError: a phase kind that was not calibrated (pass the config to `calibrate`).
        """
        phases = schedule(config, size, warm_start=segments > 1)
        seconds = segments * self.overhead[phase_kind(phases[-1])]
        for phase in phases:
            seconds += phase.steps * (1 if phase.one_pass else segments) * self.per_step[phase_kind(phase)]
        return seconds


def calibrate(
    G: Generator,
    perceptual: nn.Module | None,
    configs: Sequence[InversionConfig],
    size: int,
    *,
    device: torch.device | str = "cpu",
    segments_per_pass: int | None = None,
) -> Rates:
    """Measure `Rates` for every phase kind that ``configs`` run for a ``size`` px output (23 s for the
    three presets and today's recipe at 256 px on 2 quiet AMD EPYC cores; 0.9 s at 1024 px on an H100
    with the earlier presets).

    Args:
        G: the generator, on ``device``.
        perceptual: the LPIPS module the inversions will use (None: L2 only).
        configs: the configs whose times will be estimated, e.g. ``[preset(n) for n in PRESET_NAMES]``.
        size: the output (target) size in px.
        segments_per_pass: as the inversions will use (default: `invert`'s).
    """
    masks = face_layout_masks(size).to(device)
    target = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    kinds = {phase_kind(p): (p, config) for config in configs for p in schedule(config, size)}
    per_step, overhead = {}, {}
    for i, (kind, (phase, config)) in enumerate(kinds.items()):
        if i == 0:  # the first inversion in a process also pays for one-off set-up (kernels, allocations)
            _time_phase(G, perceptual, target, masks, phase, config, segments_per_pass)
        per_step[kind], overhead[kind] = _time_phase(G, perceptual, target, masks, phase, config, segments_per_pass)
    return Rates(per_step, overhead)


def _time_phase(
    G, perceptual, target, masks, phase: Phase, config: InversionConfig, segments_per_pass
) -> tuple[float, float]:
    """Seconds of one step of ``phase`` (the second of three) per segment (or of the one pass of a global or
    joint step), and the rest of the call's wall time per segment: the set-up, the final render and what
    the last step saves (it only judges, `chunky.inversion.JUDGE_LAST_STEP_ONLY`)."""
    one = config.replace(
        steps=0 if phase.joint else 3,
        warm_start_steps=0,
        warm_start_fine_steps=0,
        joint_steps=3 if phase.joint else 0,
        pixel_only_fraction=float(not phase.perceptual),
        coarse_to_fine=False,
        segment_patience=0,
        patience=0,
        resolution=phase.resolution,
        full_render_fraction=float(phase.render_resolution > phase.resolution),
    )
    times = []
    count = 1 if phase.one_pass else masks.shape[0]
    start = time.perf_counter()
    invert(
        G,
        resize(target, phase.render_resolution),
        None if phase.global_code else resize(masks, phase.render_resolution),
        config=one,
        perceptual=perceptual if phase.perceptual else None,
        segments_per_pass=segments_per_pass,
        progress=lambda step, total, info: times.append(info["seconds"]),
    )
    wall = time.perf_counter() - start
    step = times[1] - times[0]
    return step / count, (wall - 3 * step) / count


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample (or keep) [N, C, H, W] to ``size``; masks are re-binarised."""
    if images.shape[-1] == size:
        return images
    out = torch.nn.functional.interpolate(images, size=(size, size), mode="area")
    return out if images.shape[1] == 3 else (out > 0.5).float()


def choose_fusion_as_configured(G: Generator, size: int, precision: str) -> FusionChoice | None:
    """`choose_fusion` for ``G`` at ``size`` px in ``precision``, logged, unless ``CHUNKY_FUSION`` is "off" (then
    None: the layer tails stay op by op); another value than "auto" or "off" is named in a warning."""
    wanted = os.environ.get(FUSION_ENV, "auto")
    if wanted not in ("auto", "off"):
        log.warning('%s must be "auto" or "off", got %r; measuring as with "auto"', FUSION_ENV, wanted)
    if wanted == "off":
        return None
    choice = choose_fusion(G, size, precision)
    log.info(
        "compiled layer tails %s: one pass takes %s (compiling took %.1f s)",
        "in use" if choice.fused else "not used",
        ", ".join(f"{seconds:.3f} s {variant}" for variant, seconds in choice.seconds.items()),
        choice.compile_seconds,
    )
    return choice


class Estimates:
    """Each preset's expected time on this device: measured once, in the background (`start`), so a page
    can show it before Invert is pressed; until then (or if measuring failed) there are no figures.

    `start` first chooses the precision for this device (`choose_precision`: bf16 only where it is clearly
    faster), then times the presets at it; ``configs`` holds the presets as they were timed.

    Attributes:
        choice: the measured `PrecisionChoice` (None until measured, or if measuring failed).
        fusion: the measured `FusionChoice`: whether the layer tails run compiled (`chunky.fusion`); None until
            measured, or with ``CHUNKY_FUSION=off``.
        configs: preset name -> config, with ``precision`` set to the choice once it is made.
        rates: the measured `Rates` (None until measured).
    """

    def __init__(self):
        self.rates: Rates | None = None
        self.choice: PrecisionChoice | None = None
        self.fusion: FusionChoice | None = None
        self.size = 0
        self.configs: dict[str, InversionConfig] = {}

    @property
    def precision(self) -> str | None:
        """The precision measured for this device, "fp32" or "bf16"; None until measured (or if that failed)."""
        return None if self.choice is None else self.choice.precision

    def start(self, editor, configs: Mapping[str, InversionConfig]) -> threading.Thread:
        """`measure` in a daemon thread; a failure is logged and leaves no figures."""
        self.configs = dict(configs)

        def measure():
            try:
                self.measure(editor, configs)
            except Exception as error:  # estimates are a courtesy: the app works without them
                log.warning("calibration failed (%s: %s); no time estimates", type(error).__name__, error)

        thread = threading.Thread(target=measure, name="calibration", daemon=True)
        thread.start()
        return thread

    def measure(self, editor, configs: Mapping[str, InversionConfig]) -> None:
        """Choose the precision for ``editor``'s generator at its work size (`choose_precision`), then
        calibrate ``configs`` (preset name -> config) with that precision."""
        self.size = editor.work_size()
        self.choice = choose_precision(editor.generator, self.size)
        seconds = self.choice.seconds
        log.info(
            "precision %s: one pass at %d px takes %.3f s in fp32, %.3f s in bf16",
            self.choice.precision,
            self.size,
            seconds["fp32"],
            seconds["bf16"],
        )
        self.fusion = choose_fusion_as_configured(editor.generator, self.size, self.choice.precision)
        self.configs = {name: config.replace(precision=self.choice.precision) for name, config in configs.items()}
        perceptual = editor.perceptual(next(iter(configs.values())).perceptual)
        timed = list(self.configs.values())
        self.rates = calibrate(editor.generator, perceptual, timed, self.size, device=editor.device)

    def label(self, name: str, config: InversionConfig, segments: int = 8) -> str:
        """``name`` with its estimate for ``segments`` segments, e.g. "Balanced (~3 min for 8 segments)"."""
        if self.rates is None:
            return name.title()
        seconds = self.rates.estimate_seconds(config, segments, self.size)
        figure = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        return f"{name.title()} (~{figure} for {segments} segments)"

    def choices(self, names: Sequence[str], segments: int = 8) -> list[tuple[str, str]]:
        """(label, name) of each preset name, with its estimate for ``segments`` segments once measured (for the
        configs given to `start`)."""
        return [
            (self.label(name, self.configs[name], segments) if name in self.configs else name.title(), name)
            for name in names
        ]
