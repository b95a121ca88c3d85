"""Speed benchmarks: ``python -m chunky bench [generator|inversion|presets|...]``.

Prints absolute times (best of ``--repeat`` runs) and ratios measured in the same run, with the
machine's description. Random weights: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from chunky.config import InversionConfig
from chunky.device import BF16_MIN_SAVING, PRECISIONS, autocast, default_device, pick_precision
from chunky.generator import EqualLinear, ModulatedConv2d, StyleMix, config_f_channels, random_generator

BF16_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # what bf16 speed depends on


def cpu_description(cpuinfo: str) -> str:
    """The CPU's model name and which of `BF16_CPU_FLAGS` it has, from the text of /proc/cpuinfo, e.g.
    "Intel(R) Xeon(R) Processor (avx2 avx512f avx512_bf16 amx_tile amx_bf16)"; "" when it names no model."""
    lines = cpuinfo.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1] for line in lines if line.startswith("flags")), "").split())
    if not model:
        return ""
    present = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    absent = [flag for flag in BF16_CPU_FLAGS if flag not in flags]
    parts = ([" ".join(present)] if present else []) + (["no " + " ".join(absent)] if absent else [])
    return f"{model} ({'; '.join(parts)})"


def machine_description() -> str:
    """One line naming the CPU (with its bf16-relevant flags), thread count and library versions."""
    cpu = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = cpu_description(f.read())
    cpu = cpu or platform.processor() or platform.machine()
    gpu = f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no GPU"
    return f"{cpu}; torch {torch.__version__}; {torch.get_num_threads()} threads; {os.cpu_count()} logical CPUs{gpu}"


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _per_sample_weight_forward(
    self: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor, mix: StyleMix | None = None
) -> torch.Tensor:
    """The textbook formulation the reference port uses: one modulated weight per sample, grouped conv.
    Used only to measure what the shared-weight formulation saves (it has no per-pixel styles: no ``mix``)."""
    if mix is not None:
        raise NotImplementedError("the per-sample-weight formulation has one style per sample, not a StyleMix")
    n, c_in, h, w = x.shape
    weight = self.weight * self.scale * style[:, None, :, None, None]  # [N, out, in, k, k]
    if self.demodulate:
        weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4)) + 1e-8)[:, :, None, None, None]
    c_out, k = weight.shape[1], weight.shape[-1]
    x = x.reshape(1, n * c_in, h, w)
    if self.upsample:
        weight = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
        out = F.conv_transpose2d(x, weight.to(x.dtype), stride=2, groups=n)
        return self.blur(out.reshape(n, c_out, *out.shape[2:]))
    out = F.conv2d(x, weight.reshape(n * c_out, c_in, k, k).to(x.dtype), padding=self.padding, groups=n)
    return out.reshape(n, c_out, *out.shape[2:])


@contextlib.contextmanager
def per_sample_weights():
    fast = ModulatedConv2d.forward
    ModulatedConv2d.forward = _per_sample_weight_forward
    try:
        yield
    finally:
        ModulatedConv2d.forward = fast


@contextlib.contextmanager
def weights_prepared_every_call():
    """Switch off the kept weights (`ModulatedConv2d.prepared_weights`, `EqualLinear.scaled_parameters`): every
    pass rescales, casts and squares the weights again and leaves them in the default layout, as before they
    were kept. Used only to measure (and test) what keeping them saves."""
    cached, scaled = ModulatedConv2d.prepared_weights, EqualLinear.scaled_parameters
    ModulatedConv2d.prepared_weights = lambda self, dtype, channels_last=False: self.prepare_weights(dtype)
    EqualLinear.scaled_parameters = lambda self, device: (self.weight * self.scale, self.bias * self.lr_mul)
    try:
        yield
    finally:
        ModulatedConv2d.prepared_weights, EqualLinear.scaled_parameters = cached, scaled


GENERATOR_VARIANTS = (  # (label, output px, context it runs in)
    ("prepared weights kept", 256, contextlib.nullcontext),
    ("prepared weights kept", 1024, contextlib.nullcontext),
    ("weights prepared every call", 256, weights_prepared_every_call),
    ("per-sample weights", 256, per_sample_weights),
)


def bench_generator(repeat: int = 3, seed: int = 0) -> list[dict]:
    """Time the FFHQ config-f 1024 architecture, batch 1, in each of `GENERATOR_VARIANTS` and both precisions:
    forward, and forward+backward to the W+ codes. Rows: resolution, variant, and precision -> seconds under
    "forward_s" and "forward_backward_s"."""
    G = random_generator(1024, 512, 8, config_f_channels(1024), seed=seed)
    ws = torch.randn(1, G.n_latent, 512, generator=torch.Generator().manual_seed(seed))

    def forward(resolution: int, precision: str):
        with torch.no_grad(), autocast(precision):
            G.synthesis(ws, resolution=resolution)

    def forward_backward(resolution: int, precision: str):
        codes = ws.clone().requires_grad_(True)
        with autocast(precision):
            image = G.synthesis(codes, resolution=resolution)
        image.float().square().mean().backward()

    rows = []
    for label, resolution, context in GENERATOR_VARIANTS:
        row = {"resolution": resolution, "variant": label, "forward_s": {}, "forward_backward_s": {}}
        with context():
            for precision in PRECISIONS:
                row["forward_s"][precision] = best_time(partial(forward, resolution, precision), repeat)
                row["forward_backward_s"][precision] = best_time(
                    partial(forward_backward, resolution, precision), repeat
                )
        rows.append(row)
    return rows


def print_generator_table(rows: list[dict]) -> None:
    print(f"StyleGAN2 FFHQ config-f 1024 synthesis, batch 1 -- {machine_description()}")
    print(
        f"{'output px':>9} | {'variant':<27} | {'fwd fp32 s':>10} | {'fwd bf16 s':>10} | {'fp32/bf16':>9} | "
        f"{'fwd+bwd fp32 s':>14} | {'fwd+bwd bf16 s':>14} | {'fp32/bf16':>9}"
    )
    for r in rows:
        fwd, both = r["forward_s"], r["forward_backward_s"]
        print(
            f"{r['resolution']:>9} | {r['variant']:<27} | {fwd['fp32']:>10.3f} | {fwd['bf16']:>10.3f} | "
            f"{fwd['fp32'] / fwd['bf16']:>8.2f}x | {both['fp32']:>14.3f} | {both['bf16']:>14.3f} | "
            f"{both['fp32'] / both['bf16']:>8.2f}x"
        )
    get = {(r["resolution"], r["variant"]): r for r in rows}
    kept, full = get[256, "prepared weights kept"], get[1024, "prepared weights kept"]
    print("ratios (same run):")

    def ratio(a: dict, b: dict, precision: str) -> str:
        return (
            f"forward {a['forward_s'][precision] / b['forward_s'][precision]:.2f}x, "
            f"fwd+bwd {a['forward_backward_s'][precision] / b['forward_backward_s'][precision]:.2f}x"
        )

    print(f"  full 1024 px / 256 px-limited synthesis, fp32: {ratio(full, kept, 'fp32')}")
    for variant in ("weights prepared every call", "per-sample weights"):
        for precision in PRECISIONS:
            if (256, variant) in get:
                print(f"  {variant} / kept, 256 px {precision}: {ratio(get[256, variant], kept, precision)}")
    seconds = kept["forward_backward_s"]
    print(
        f"precision the calibration would choose here (fwd+bwd at 256 px; bf16 only when it saves >= "
        f"{BF16_MIN_SAVING:.0%}): {pick_precision(seconds)} (bf16 takes {seconds['bf16'] / seconds['fp32']:.2f}x "
        "the fp32 time)"
    )


def eight_segment_scene(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random [1, 3, size, size] target and the 8 segments of an average FFHQ-aligned face (skin, brows,
    eyes, nose, mouth, hair, neck, background; `LayoutParser`) as [8, 1, size, size] masks. Speed does
    not depend on the target's content, but it does depend on the segments' sizes."""
    import numpy as np

    from chunky.segmentation import LayoutParser, Segmentation

    target = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    labels = LayoutParser().parse(np.zeros((size, size, 3), np.uint8))
    return target, Segmentation.from_parsing(labels, min_fraction=0).masks


INVERSION_VARIANTS = (  # (label, output px, config changes, segments per pass, run by default)
    ("256 px fp32", 256, {}, None, True),
    ("256 px bf16", 256, {"precision": "bf16"}, None, True),
    ("256 px bf16, no windows", 256, {"precision": "bf16", "window_segments": False}, None, True),
    ("256 px bf16, coarse-to-fine", 256, {"precision": "bf16", "coarse_to_fine": True}, None, True),
    ("128 px preview fp32", 128, {"resolution": 128}, None, True),
    ("128 px preview bf16", 128, {"resolution": 128, "precision": "bf16"}, None, True),
    ("256 px fp32, one batch of 8", 256, {"window_segments": False}, 8, False),
    ("256 px fp32, one pass per segment", 256, {"window_segments": False}, 1, False),
)


def bench_inversion(steps: int = 30, seed: int = 0, only: str = "") -> list[dict]:
    """8-segment W+ inversion on the config-f 1024 architecture (random weights): LPIPS-VGG with a
    random backbone + L2, ``steps`` steps, in each default variant of ``INVERSION_VARIANTS`` (or in those
    whose label contains ``only``). Reports the optimisation loop's seconds per step and per segment-step, and the
    wall time of the whole call (setup and final render included)."""
    from chunky.config import InversionConfig
    from chunky.inversion import invert
    from chunky.losses import build_perceptual

    G = random_generator(1024, 512, 8, config_f_channels(1024), seed=seed)
    perceptual = build_perceptual("lpips-vgg", pretrained_backbone=False)
    base = InversionConfig(space="w+", steps=steps, perceptual="lpips-vgg", resolution=256)
    rows = []
    for label, size, changes, per_pass, by_default in INVERSION_VARIANTS:
        if (only not in label) if only else not by_default:
            continue
        target, masks = eight_segment_scene(size, seed)
        start = time.perf_counter()
        result = invert(
            G, target, masks, config=base.replace(**changes), perceptual=perceptual, segments_per_pass=per_pass
        )
        wall = time.perf_counter() - start
        per_step = result.seconds / result.steps_run
        rows.append(
            {
                "variant": label,
                "step_s": per_step,
                "segment_step_s": per_step / 8,
                "total_s": wall,
                "steps": result.steps_run,
            }
        )
    return rows


def print_inversion_table(rows: list[dict]) -> None:
    steps = rows[0]["steps"] if rows else 0
    print(
        f"8-segment W+ inversion (FFHQ face layout), config-f 1024 architecture, LPIPS-VGG + L2, {steps} steps -- "
        f"{machine_description()}"
    )
    print(f"{'variant':<34} | {'s / step':>8} | {'s / segment-step':>16} | {'total s':>8}")
    for r in rows:
        print(f"{r['variant']:<34} | {r['step_s']:>8.2f} | {r['segment_step_s']:>16.3f} | {r['total_s']:>8.1f}")
    get = {r["variant"]: r for r in rows}
    pairs = [
        ("256 px fp32, one batch of 8", "256 px fp32, one pass per segment", "one batch of 8 / one pass per segment"),
        ("256 px fp32", "256 px bf16", "fp32 / bf16 at 256 px"),
        ("256 px bf16, no windows", "256 px bf16", "whole-image renders / segment windows, bf16"),
        ("256 px bf16", "256 px bf16, coarse-to-fine", "fixed / coarse-to-fine, bf16"),
        ("256 px bf16", "128 px preview bf16", "256 px / 128 px preview, bf16"),
    ]
    lines = [
        f"  {name}: {get[a]['step_s'] / get[b]['step_s']:.2f}x per step"
        for a, b, name in pairs
        if a in get and b in get
    ]
    if lines:
        print("ratios (same run):")
        print("\n".join(lines))


TODAY = InversionConfig(
    space="w+", steps=150, resolution=256, precision="bf16", full_render_fraction=0.0
)  # before presets


def preset_scene(G, size: int = 256, seed: int = 0, truncation: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """A target the generator can reach segment by segment: one W code per face-layout segment, drawn near
    w_avg (``truncation``), each rendered at ``size`` and composited with the [8, 1, size, size] masks."""
    from chunky.calibration import face_layout_masks

    masks = face_layout_masks(size).to(G.w_avg.device)
    z = torch.randn(masks.shape[0], G.style_dim, generator=torch.Generator().manual_seed(seed)).to(masks.device)
    with torch.no_grad():
        renders = G.synthesis(G.mapping(z, truncation_psi=truncation), resolution=size)
    return (renders * masks).sum(dim=0, keepdim=True).clamp(-1, 1), masks


# An opt-in recipe, in no preset: balanced's warm start, shortened, then every code fitted in one joint render per
# step (`InversionConfig.joint_steps`) and no per-segment steps. On the random-weight scene it beats balanced in
# half its time; on real faces with the small model its segments' own renders drift far from the joint render
# (docs/speed.md, "Joint steps").
JOINT_TRIAL = dict(warm_start_steps=20, warm_start_fine_steps=10, joint_steps=90, steps=0, lr=0.07)


def scaled(config: InversionConfig, scale: float) -> InversionConfig:
    """``config`` with its step counts multiplied by ``scale`` (for a quick development run)."""
    if scale == 1:
        return config
    return config.replace(
        steps=max(0 if config.joint_steps else 1, round(config.steps * scale)),
        warm_start_steps=round(config.warm_start_steps * scale),
        warm_start_fine_steps=round(config.warm_start_fine_steps * scale),
        joint_steps=round(config.joint_steps * scale),
        segment_patience=max(1, round(config.segment_patience * scale)) if config.segment_patience else 0,
    )


def bench_presets(scale: float = 1.0, seed: int = 0, only: str = "") -> list[dict]:
    """Each preset beside today's recipe on `preset_scene` (config-f 1024 architecture, random weights,
    256 px target): wall time, steps and passes run, composite MSE and LPIPS. LPIPS-VGG with a random
    backbone is the loss (as in `bench_inversion`); LPIPS-Alex with a random backbone is reported. Both
    backbones are drawn from a fixed seed: unseeded, the figures of a recipe whose steps follow the LPIPS
    gradient's size moved by a few percent from run to run."""
    from chunky.config import PRESET_NAMES, preset
    from chunky.inversion import invert
    from chunky.losses import build_perceptual
    from chunky.metrics import l2_distance, lpips_distance

    device = default_device()
    G = random_generator(1024, 512, 8, config_f_channels(1024), seed=seed).to(device)
    with torch.random.fork_rng():  # the random backbones: the same loss and metric in every run and --seed
        torch.manual_seed(0)
        loss = build_perceptual("lpips-vgg", pretrained_backbone=False).to(device)
        metric = build_perceptual("lpips-alex", pretrained_backbone=False).to(device)
    target, masks = (t.to(device) for t in preset_scene(G, 256, seed))
    tails = layer_tails_as_the_app_runs_them(G, 256, "bf16")
    variants = [("today", TODAY)] + [(name, preset(name)) for name in PRESET_NAMES]
    variants.append(("joint", preset("balanced", **JOINT_TRIAL)))
    rows = []
    for label, config in variants:
        if only and only not in label:
            continue
        config = scaled(config, scale)
        start = time.perf_counter()
        result = invert(G, target, masks, config=config, perceptual=loss)
        wall = time.perf_counter() - start
        rows.append(
            {
                "variant": label,
                "wall_s": wall,
                "steps": result.steps_run,
                "passes": result.passes,
                "segment_steps": sum(result.segment_steps),
                "mse": float(l2_distance(result.composite, target)[0]),
                "lpips": float(lpips_distance(result.composite, target, metric)[0]),
                "config": config,
                "layer_tails": tails,
            }
        )
    return rows


def layer_tails_as_the_app_runs_them(G, size: int, precision: str) -> str:
    """Compile the layer tails where that pays, as the app's start-up calibration does
    (`chunky.calibration.choose_fusion_as_configured`), before anything is timed; returns a line saying what was
    chosen on what."""
    from chunky.calibration import FUSION_ENV, choose_fusion_as_configured

    choice = choose_fusion_as_configured(G, size, precision)
    if choice is None:
        return f"layer tails: op by op ({FUSION_ENV}=off)"
    passes = ", ".join(f"{seconds:.3f} s {variant}" for variant, seconds in choice.seconds.items())
    return (
        f"layer tails: {'compiled' if choice.fused else 'op by op'} (one {size} px {precision} pass: {passes}; "
        f"compiling took {choice.compile_seconds:.1f} s, not counted below)"
    )


# The goals on 2 CPU cores, 8 segments at 256 px (issue 24): balanced within this time at most 1.05x the MSE of
# today's recipe, preview within this time.
BALANCED_GOAL_S = 60
PREVIEW_GOAL_S = 15


def print_presets_table(rows: list[dict], scale: float = 1.0) -> None:
    print(
        f"Presets vs today's recipe (150 per-segment W+ steps from w_avg, 256 px, bf16): 8-segment face layout, "
        f"config-f 1024 architecture, random weights (a stand-in for a real face), target from codes near w_avg"
        f"{'' if scale == 1 else f', step counts x{scale:g}'} -- {machine_description()}"
    )
    print(
        f"{'preset':<9} | {'wall s':>7} | {'steps':>5} | {'passes':>6} | {'segment-steps':>13} | {'MSE':>8} | "
        f"{'LPIPS':>6} | {'time / today':>12} | {'MSE / today':>11}"
    )
    if rows and "layer_tails" in rows[0]:
        print(rows[0]["layer_tails"])
    base = next((r for r in rows if r["variant"] == "today"), None)
    for r in rows:
        ratios = f"{r['wall_s'] / base['wall_s']:>12.3f} | {r['mse'] / base['mse']:>11.3f}" if base else ""
        print(
            f"{r['variant']:<9} | {r['wall_s']:>7.1f} | {r['steps']:>5} | {r['passes']:>6} | "
            f"{r['segment_steps']:>13} | {r['mse']:>8.5f} | {r['lpips']:>6.4f} | {ratios}"
        )
    get = {r["variant"]: r for r in rows}
    if "balanced" in get:
        b = get["balanced"]
        fast = b["wall_s"] <= BALANCED_GOAL_S
        if base:
            close = b["mse"] <= 1.05 * base["mse"]
            print(
                f"goal balanced: <= {BALANCED_GOAL_S} s ({b['wall_s']:.1f} s) at MSE <= 1.05 x today "
                f"({b['mse'] / base['mse']:.3f}x): {'met' if fast and close else 'NOT met'}"
            )
        else:
            print(
                f"goal balanced: <= {BALANCED_GOAL_S} s ({b['wall_s']:.1f} s): {'met' if fast else 'NOT met'}; "
                f"MSE not compared (today's recipe not run)"
            )
    if "best" in get and "balanced" in get:
        b = get["best"]
        met = b["wall_s"] <= 900 and b["mse"] < get["balanced"]["mse"]
        print(
            f"goal best: <= 900 s ({b['wall_s']:.0f} s) "
            f"and MSE below balanced ({b['mse'] / get['balanced']['mse']:.3f}x): {'met' if met else 'NOT met'}"
        )
    if "preview" in get:
        seconds = get["preview"]["wall_s"]
        met = "met" if seconds <= PREVIEW_GOAL_S else "NOT met"
        print(f"goal preview: <= {PREVIEW_GOAL_S} s ({seconds:.1f} s): {met}")


def astronaut_photo() -> Path:
    """scikit-image's public-domain astronaut photo (scikit-image is in requirements-dev.txt)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs scikit-image (requirements-dev.txt) for its public-domain astronaut photo")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "astronaut.png"


def bench_presets_on_faces(images: list[str], limit: int | None = None, scale: float = 1.0) -> list[dict]:
    """Each preset and today's recipe on real photos with the bundled small face model (offline; 64 px, its
    own scale): per photo, every segment projected (nothing taken from the photo), beside one global W+ code
    given 100 steps (`chunky.evaluate`'s baseline). Returns one row per recipe with the means over the photos
    of wall seconds, composite L2 (MSE on [-1, 1]), dlib identity distance, and the per-segment / global L2
    ratio; and "photos", how many were used (a photo without a face is skipped)."""
    import numpy as np

    from chunky.config import PRESET_NAMES
    from chunky.editor import ChunkyEditor
    from chunky.errors import ChunkyError
    from chunky.evaluate import METHODS, method_config, photo_paths
    from chunky.images import read_image
    from chunky.metrics import l2_distance

    editor = ChunkyEditor.small()
    identity = editor.identity()
    perceptual = editor.default_perceptual
    recipes = [("today", editor.default_config(space="w+", steps=150))]
    recipes += [(name, editor.preset(name)) for name in PRESET_NAMES]
    recipes.append(("joint", editor.preset("balanced", **JOINT_TRIAL)))
    recipes = [(label, scaled(config, scale)) for label, config in recipes]
    figures: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label, _ in recipes}
    for path in photo_paths(images)[:limit]:
        try:
            aligned = editor.align(read_image(path, name=path.name), skip_alignment=False)
        except ChunkyError as error:
            print(f"skipped {path.name}: {error}")
            continue
        segments = editor.segment(aligned.crop)
        single = editor.invert(aligned.crop, None, config=method_config(editor, METHODS["w+"], 100, perceptual))
        single_l2 = float(l2_distance(single.composite, single.target)[0])
        for label, config in recipes:
            start = time.perf_counter()
            result = editor.invert(aligned.crop, segments, config=config)
            wall = time.perf_counter() - start
            l2 = float(l2_distance(result.composite, result.target)[0])
            distance = float(identity.distance(result.composite, result.target)[0])
            figures[label].append((wall, l2, distance, l2 / single_l2))
    rows = []
    for label, config in recipes:
        values = np.array(figures[label]).reshape(-1, 4)
        wall, l2, distance, ratio = values.mean(axis=0) if len(values) else [float("nan")] * 4
        rows.append(
            {
                "variant": label,
                "photos": len(values),
                "wall_s": float(wall),
                "l2": float(l2),
                "identity": float(distance),
                "ratio": float(ratio),
                "config": config,
            }
        )
    return rows


def print_presets_on_faces_table(rows: list[dict], scale: float = 1.0) -> None:
    count = rows[0]["photos"] if rows else 0
    photos = "1 real photo" if count == 1 else f"{count} real photos"
    print(
        f"Presets vs today's recipe (150 per-segment W+ steps from w_avg) on {photos}, small face model "
        f"(64 px, L2 loss), every segment projected; global W+: one code, 100 steps"
        f"{'' if scale == 1 else f'; step counts x{scale:g}'} -- {machine_description()}"
    )
    print(
        f"{'preset':<9} | {'wall s':>7} | {'L2':>8} | {'dlib identity':>13} | {'L2 / global W+':>14} | "
        f"{'time / today':>12} | {'L2 / today':>10}"
    )
    base = next((r for r in rows if r["variant"] == "today"), None)
    for r in rows:
        ratios = f"{r['wall_s'] / base['wall_s']:>12.3f} | {r['l2'] / base['l2']:>10.3f}" if base else ""
        print(
            f"{r['variant']:<9} | {r['wall_s']:>7.2f} | {r['l2']:>8.5f} | {r['identity']:>13.4f} | "
            f"{r['ratio']:>14.3f} | {ratios}"
        )


def bench_editing(repeat: int = 3, seed: int = 0) -> list[dict]:
    """Slider moves on an 8-segment W+ result (config-f 1024 architecture, random weights, 256 px renders):
    only the edited segments are re-rendered; and a full-resolution export (every segment rendered at
    1024 px, composited, pasted back into a 2048 px photo)."""
    import numpy as np

    from chunky.align import align_face, paste_back
    from chunky.compositing import soft_composite
    from chunky.config import InversionConfig
    from chunky.directions import pca_directions
    from chunky.editing import apply_edit
    from chunky.images import tensor_to_uint8
    from chunky.inversion import invert

    G = random_generator(1024, 512, 8, config_f_channels(1024), seed=seed)
    target, masks = eight_segment_scene(256, seed)
    result = invert(G, target, masks, config=InversionConfig(steps=1, perceptual="none", precision="bf16"))
    directions = pca_directions(G, count=1)
    strengths = {directions[0].name: 2.0}
    photo = (np.random.default_rng(seed).random((2048, 2048, 3)) * 255).astype(np.uint8)
    aligned = align_face(photo, None, size=1024, skip_alignment=True)
    full_masks = torch.nn.functional.interpolate(masks, size=(1024, 1024), mode="nearest")
    full_target = torch.nn.functional.interpolate(target, size=(1024, 1024), mode="bilinear", align_corners=False)

    def slider(segments, precision):
        with autocast(precision):
            apply_edit(G, result, directions, strengths, segments)

    def export():
        with torch.no_grad(), autocast("bf16"):
            renders = torch.cat([G.synthesis(result.codes[k : k + 1], resolution=1024).float() for k in range(8)])
        composite = soft_composite(renders, full_masks, full_target)
        paste_back(tensor_to_uint8(composite), aligned)

    return [
        {
            "step": "slider move, 1 of 8 segments re-rendered, 256 px, fp32",
            "s": best_time(lambda: slider([0], "fp32"), repeat),
        },
        {
            "step": "slider move, 1 of 8 segments re-rendered, 256 px, bf16",
            "s": best_time(lambda: slider([0], "bf16"), repeat),
        },
        {
            "step": "slider move, all 8 segments re-rendered, 256 px, bf16",
            "s": best_time(lambda: slider(None, "bf16"), repeat),
        },
        {
            "step": "full-resolution export: 8 segments at 1024 px (bf16) + composite + paste-back into 2048 px",
            "s": best_time(export, max(1, repeat - 2)),
        },
    ]


def print_editing_table(rows: list[dict]) -> None:
    print(f"Editing: 8-segment W+ result, config-f 1024 architecture -- {machine_description()}")
    for r in rows:
        print(f"  {r['step']:<92} {r['s']:>7.3f} s")
    one, all_ = rows[1]["s"], rows[2]["s"]
    print(f"ratio (same run): all 8 / 1 re-rendered segment, bf16: {all_ / one:.2f}x")


def bench_tuning(steps: int = 6, seed: int = 0) -> list[dict]:
    """Pivotal tuning of one segment of an 8-segment W+ result (config-f 1024 architecture, random weights,
    LPIPS-VGG with a random backbone + L2, optimised at 256 px): seconds per tuning step (from the step
    times of one run) and the whole call (generator copy and final 1024 px render included)."""
    from chunky.config import InversionConfig
    from chunky.inversion import invert
    from chunky.losses import build_perceptual
    from chunky.tuning import tune_segment

    G = random_generator(1024, 512, 8, config_f_channels(1024), seed=seed)
    perceptual = build_perceptual("lpips-vgg", pretrained_backbone=False)
    target, masks = eight_segment_scene(1024, seed)
    rows = []
    for label, segment, precision in (
        ("skin (large), fp32", 0, "fp32"),
        ("skin (large), bf16", 0, "bf16"),
        ("eyes (small: windowed), bf16", 2, "bf16"),
    ):
        config = InversionConfig(steps=1, perceptual="lpips-vgg", resolution=256, precision=precision)
        result = invert(G, target, masks, config=config, perceptual=perceptual)
        times = []
        start = time.perf_counter()
        tune_segment(
            G,
            result,
            segment,
            steps=steps,
            perceptual=perceptual,
            progress=lambda s, t, info, seen=times: seen.append(info["seconds"]),
        )
        wall = time.perf_counter() - start
        rows.append(
            {"segment": label, "step_s": (times[-1] - times[0]) / (len(times) - 1), "total_s": wall, "steps": steps}
        )
    return rows


def print_tuning_table(rows: list[dict]) -> None:
    print(f"Pivotal tuning of one segment, config-f 1024 architecture, 256 px -- {machine_description()}")
    for r in rows:
        print(
            f"  {r['segment']:<32} {r['step_s']:>7.3f} s/step   {r['total_s']:>7.2f} s for {r['steps']} steps "
            "(with copy and 1024 px render)"
        )
    print(
        f"ratios (same run): fp32/bf16 {rows[0]['step_s'] / rows[1]['step_s']:.2f}x, "
        f"large/small segment (bf16) {rows[1]['step_s'] / rows[2]['step_s']:.2f}x"
    )


def bench_faces(repeat: int = 3, seed: int = 0) -> list[dict]:
    """Detection + FFHQ alignment + parsing of a 1024 x 1024 photo with the real facexlib networks.

    Uses the real weights when ``CHUNKY_WEIGHTS_DIR`` holds them, else random weights (the same
    networks and cost, except that random detector scores may keep a different number of boxes)."""
    import cv2
    import numpy as np

    from chunky.align import DETECT_MAX_SIDE, DetectedFace, align_face, canonical_landmarks, detect_faces
    from chunky.face_models import DETECTOR_WEIGHTS, PARSER_WEIGHTS, BiSeNetParser, RetinaFaceDetector

    torch.manual_seed(seed)
    detector, parser, source = _face_models(RetinaFaceDetector, BiSeNetParser, DETECTOR_WEIGHTS, PARSER_WEIGHTS)
    photo = (np.random.default_rng(seed).random((1024, 1024, 3)) * 255).astype(np.uint8)
    faces = detect_faces(photo, detector)
    landmarks = faces[0].landmarks if faces else None

    class OneFace:  # detection is timed separately; alignment and parsing need one face to work on
        def detect(self, image):
            points = canonical_landmarks(700) + 150 if landmarks is None else landmarks
            return [DetectedFace(np.concatenate([points.min(0), points.max(0)]), 1.0, points)]

    aligned = align_face(photo, OneFace(), size=1024, skip_alignment=False)
    sizes = {"detector": _megabytes(detector.model), "parser": _megabytes(parser.model)}
    small = cv2.resize(photo, (DETECT_MAX_SIDE, DETECT_MAX_SIDE), interpolation=cv2.INTER_AREA)
    network_input = torch.from_numpy(small).permute(2, 0, 1)[None].float()

    def detector_network():
        with torch.no_grad():
            detector.model(network_input)

    rows = [
        {
            "step": f"detect: RetinaFace R50 network ({sizes['detector']:.0f} MB) at {DETECT_MAX_SIDE} px",
            "s": best_time(detector_network, repeat),
        },
        {
            "step": "align (FFHQ crop, 1024 px)",
            "s": best_time(lambda: align_face(photo, OneFace(), size=1024, skip_alignment=False), repeat),
        },
        {
            "step": f"parse (BiSeNet, {sizes['parser']:.0f} MB, 512 px)",
            "s": best_time(lambda: parser.parse(aligned.crop), repeat),
        },
    ]
    rows.append({"step": "total (detector network + align + parse)", "s": sum(r["s"] for r in rows)})
    rows.append(
        {
            "step": f"detect as run incl. box decoding and NMS of {len(faces)} boxes ({source})",
            "s": best_time(lambda: detect_faces(photo, detector), repeat),
        }
    )
    return rows


def _face_models(detector_cls, parser_cls, detector_name, parser_name):
    folder = os.environ.get("CHUNKY_WEIGHTS_DIR")
    if folder and all(os.path.exists(os.path.join(folder, n)) for n in (detector_name, parser_name)):
        return (
            detector_cls(os.path.join(folder, detector_name)),
            parser_cls(os.path.join(folder, parser_name)),
            "real weights",
        )
    import tempfile
    import warnings

    from chunky.compat import ensure_torchvision

    ensure_torchvision()
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        det_path, par_path = os.path.join(tmp, "d.pth"), os.path.join(tmp, "p.pth")
        torch.save(RetinaFace(network_name="resnet50", device=torch.device("cpu")).state_dict(), det_path)
        torch.save(BiSeNet(num_class=19).state_dict(), par_path)
        return detector_cls(det_path), parser_cls(par_path), "random weights"


def _megabytes(module: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def print_faces_table(rows: list[dict]) -> None:
    print(f"Faces: 1024 x 1024 photo -- {machine_description()}")
    for r in rows:
        print(f"  {r['step']:<66} {r['s']:>7.3f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chunky.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "which",
        choices=["all", "generator", "inversion", "presets", "presets-faces", "faces", "editing", "tuning"],
        nargs="?",
        default="all",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per generator measurement (best is reported)")
    parser.add_argument("--steps", type=int, default=30, help="inversion steps per variant")
    parser.add_argument(
        "--only",
        default="",
        help="run only the inversion variants whose label contains this "
        "(e.g. 'batch' for the batching comparison, not run by default)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="presets: multiply every step count (e.g. 0.2 for a quick run)"
    )
    parser.add_argument("--quick", action="store_true", help="presets: --scale 0.2")
    parser.add_argument("--seed", type=int, default=0, help="presets: the scene's weights and codes")
    parser.add_argument(
        "--images",
        nargs="+",
        default=[],
        help="presets-faces: folders of face photos, or photos (default: scikit-image's astronaut)",
    )
    parser.add_argument("--limit", type=int, default=None, help="presets-faces: only the first N photos")
    args = parser.parse_args(argv)
    if args.which in ("all", "generator"):
        print_generator_table(bench_generator(args.repeat))
    if args.which in ("all", "editing"):
        print_editing_table(bench_editing(args.repeat))
    if args.which in ("all", "tuning"):
        print_tuning_table(bench_tuning())
    if args.which in ("all", "faces"):
        print_faces_table(bench_faces(args.repeat))
    if args.which in ("all", "inversion"):
        print_inversion_table(bench_inversion(args.steps, only=args.only))
    if args.which == "presets":  # not part of "all": about 22 minutes on 2 CPU cores
        scale = 0.2 if args.quick else args.scale
        print_presets_table(bench_presets(scale, seed=args.seed, only=args.only), scale)
    if args.which == "presets-faces":  # not part of "all": about 40 s per photo on 2 CPU cores
        scale = 0.2 if args.quick else args.scale
        images = args.images or [str(astronaut_photo())]
        print_presets_on_faces_table(bench_presets_on_faces(images, args.limit, scale), scale)


if __name__ == "__main__":
    main()
