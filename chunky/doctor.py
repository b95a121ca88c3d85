"""`python -m chunky doctor`: check the whole pipeline on the real weights without any photo of ours.

It fetches every registry file (and reports its sha256, to pin it), renders random faces with the real
generator (truncation 0.7: FFHQ-aligned by construction) and checks each stage: detection, alignment,
parsing, per-segment vs global inversion, the published directions and the identity model. With the
tiny test model (``--model tiny``) the same code runs offline; checks that say nothing on random
weights are reported as "n/a (random weights)" with their numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from chunky.directions import Direction, ganspace_directions
from chunky.editing import apply_edit
from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError
from chunky.images import uint8_to_tensor
from chunky.metrics import l2_distance, lpips_distance
from chunky.segmentation import Segmentation, dilate_masks
from chunky.weights import fetch, registry, sha256_of

log = logging.getLogger(__name__)

PASS, FAIL = "PASS", "FAIL"
RANDOM = "n/a (random weights)"
NO_FACE_MODELS = "n/a (test mode: no face models)"
# Where a plausible FFHQ-aligned face has each part: centroid row range and area share range (fractions).
PLAUSIBLE = {
    "skin": ((0.40, 0.72), (0.08, 0.55)),
    "hair": ((0.05, 0.60), (0.02, 0.65)),
    "eyes": ((0.38, 0.56), (0.001, 0.03)),
    "mouth": ((0.62, 0.85), (0.002, 0.06)),
}
# Directions whose name says where they act: keyword in the name -> segments of that region.
REGIONS = (
    ("eyebrow", ("brows",)),
    ("smile", ("mouth",)),
    ("lipstick", ("mouth",)),
    ("lip", ("mouth",)),
    ("mouth", ("mouth",)),
    ("eye", ("eyes",)),
    ("hair", ("hair",)),
    ("bald", ("hair",)),
    ("beard", ("skin", "mouth")),
    ("nose", ("nose",)),
)
CONCENTRATION = 2.0  # mean change inside the named region / mean change outside it, at least


@dataclass(frozen=True)
class Check:
    """One line of the report: group (e.g. "parsing"), name, status (PASS, FAIL or "n/a (why)"), detail."""

    group: str
    name: str
    status: str
    detail: str = ""


def run(
    editor: ChunkyEditor,
    *,
    real: bool,
    faces: int = 3,
    steps: int = 100,
    size: int = 256,
    fetch_weights: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Check]:
    """Every check, in pipeline order.

    Args:
        editor: the facade to check (its public methods are what is exercised).
        real: the editor holds the real weights; False (test mode) marks weight-dependent checks n/a.
        faces: random faces rendered (seeds 0..faces-1), at least 2.
        steps: inversion steps per method; size: inversion and edit resolution.
        fetch_weights: fetch every registry file and report its sha256 (real mode only).
        progress: called with the name of each stage as it starts.
    """
    say = progress or (lambda stage: None)
    checks = []
    if fetch_weights and real:
        say("weights")
        bundled = editor.generator_name is not None and registry()[editor.generator_name].bundled
        checks += check_weights([editor.generator_name] if bundled else None)
    elif not real:
        checks.append(Check("weights", "registry", "n/a (test mode: no downloads)", f"{len(registry())} files listed"))
    say("faces")
    images = [editor.random_face(seed, truncation=0.7) for seed in range(max(2, faces))]
    checks += check_faces(editor, images, real)
    say("inversion")
    segmentation = editor.segment(images[0]).resized(size)
    found, result = check_inversion(editor, images[0], segmentation, steps, size, real)
    checks += found
    say("directions")
    checks += check_directions(editor, result, segmentation, real)
    say("identity")
    checks += check_identity(editor, images, real)
    return checks


def check_weights(names: Sequence[str] | None = None) -> list[Check]:
    """Fetch each registry file; PASS with its sha256 (and whether the registry pins it)."""
    checks = []
    for name in names or list(registry()):
        try:
            digest = sha256_of(fetch(name))
        except ChunkyError as error:
            checks.append(Check("weights", name, FAIL, str(error)))
            continue
        pinned = registry()[name].sha256
        note = "pinned" if pinned == digest else "not pinned yet: add it to weights/registry.toml"
        checks.append(Check("weights", name, PASS, f"sha256 {digest} ({note})"))
    return checks


def check_faces(editor: ChunkyEditor, images: list[np.ndarray], real: bool) -> list[Check]:
    """Detection (exactly one face), alignment of an aligned face (about the identity transform) and
    parsing (skin, hair, eyes, mouth where and as large as on an FFHQ face) on each rendered face."""
    checks = []
    detector = editor.detector()
    for seed, image in enumerate(images):
        if detector is None:
            checks.append(Check("detection", f"face {seed}", NO_FACE_MODELS))
        else:
            count = len(detector.detect(image))
            checks.append(Check("detection", f"face {seed}", PASS if count == 1 else FAIL, f"{count} faces found"))
        try:
            aligned = editor.align(image, skip_alignment=False if detector is not None else None)
        except ChunkyError as error:  # no face found: reported, and the rest is checked on the render as it is
            checks.append(Check("alignment", f"face {seed}", FAIL, str(error)))
            checks.append(_parsing_check(editor.segment(image), seed, real))
            continue
        scale = aligned.size / image.shape[0]  # the crop is the photo's side at the generator's size
        error = float(np.abs(aligned.matrix[:, :2] / scale - np.eye(2)).max())
        shift = float(np.abs(aligned.matrix[:, 2]).max()) / aligned.size
        ok = error < 0.05 and shift < 0.03
        status = (PASS if ok else FAIL) if not aligned.skipped else NO_FACE_MODELS
        checks.append(Check("alignment", f"face {seed}", status, f"|A - I| {error:.3f}, shift {shift:.3f} of the side"))
        checks.append(_parsing_check(editor.segment(aligned.crop), seed, real))
    return checks


def _parsing_check(segmentation: Segmentation, seed: int, real: bool) -> Check:
    """Skin, eyes and mouth (and hair, where the parser tells it apart) where and as large as on a face."""
    problems, details = [], []
    for name, ((top, bottom), (small, large)) in PLAUSIBLE.items():
        if name not in segmentation.names:
            if name != "hair" or "background" not in segmentation.names:  # the landmark segmenter has no hair
                problems.append(f"no {name}")
            continue
        mask = segmentation.masks[segmentation.index(name), 0]
        area = float(mask.mean())
        rows = torch.arange(mask.shape[0], dtype=torch.float32)[:, None] / mask.shape[0]
        centre = float((mask * rows).sum() / mask.sum().clamp(min=1e-8))
        details.append(f"{name} row {centre:.2f} area {area:.3f}")
        if not (top <= centre <= bottom and small <= area <= large):
            problems.append(f"{name} implausible")
    status = (FAIL if problems else PASS) if real else RANDOM
    return Check("parsing", f"face {seed}", status, "; ".join(problems + details))


def check_inversion(
    editor: ChunkyEditor, image: np.ndarray, segmentation: Segmentation, steps: int, size: int, real: bool
):
    """Per-segment inversion vs the global code (same steps, nothing kept) on LPIPS (AlexNet).
    Returns the checks and the per-segment result (for the direction checks)."""
    config = editor.default_config(steps=steps, resolution=min(size, 256))
    chunky = editor.invert(image, segmentation, config=config, size=size)
    baseline = editor.invert(image, None, config=config, size=size)
    if editor.pretrained_perceptual or not real:
        perceptual = editor.perceptual("lpips-alex")
        measure = "LPIPS"
        ours = float(lpips_distance(chunky.composite, chunky.target, perceptual)[0])
        theirs = float(lpips_distance(baseline.composite, baseline.target, perceptual)[0])
    else:  # no ImageNet backbone for LPIPS (the small model, offline): L2
        measure = "L2"
        ours = float(l2_distance(chunky.composite, chunky.target)[0])
        theirs = float(l2_distance(baseline.composite, baseline.target)[0])
    status = (PASS if ours < theirs else FAIL) if real else RANDOM
    detail = (
        f"{measure} per-segment {ours:.4f} vs global {theirs:.4f} ({len(segmentation.names)} segments, {steps} steps)"
    )
    return [Check("inversion", "per-segment beats global", status, detail)], chunky


def check_directions(editor: ChunkyEditor, result, segmentation: Segmentation, real: bool) -> list[Check]:
    """Each direction whose name says where it acts changes the image mostly there: the mean change inside
    that region (grown by 2% of the side) is at least ``CONCENTRATION`` times the mean change outside."""
    directions = editor.directions() if real else _tiny_ganspace(editor)
    checks = []
    for direction in directions:
        region = _region_of(direction.name)
        if region is None or not all(n in segmentation.names for n in region):
            continue
        edit = apply_edit(editor.generator, result, directions, {direction.name: direction.limits[1]})
        change = (edit.composite - result.composite).abs().mean(dim=1)[0]  # [H, W]
        masks = segmentation.masks[[segmentation.index(n) for n in region]].amax(dim=0, keepdim=True)
        inside = dilate_masks(masks, max(1, masks.shape[-1] // 50))[0, 0] > 0.5
        ratio = float(change[inside].mean() / change[~inside].mean().clamp(min=1e-8))
        status = (PASS if ratio >= CONCENTRATION else FAIL) if real else RANDOM
        detail = f"mean change in {'+'.join(region)} is {ratio:.1f}x the rest ({direction.group})"
        checks.append(Check("directions", direction.name, status, detail))
    return checks


def _region_of(name: str) -> tuple[str, ...] | None:
    lowered = name.lower()
    return next((region for keyword, region in REGIONS if keyword in lowered), None)


@torch.no_grad()
def _tiny_ganspace(editor: ChunkyEditor) -> list[Direction]:
    """GANSpace's recipes on a PCA of the test model's W, so the set-coordinate code path runs offline."""
    G = editor.generator
    z = torch.randn(4096, G.style_dim, generator=torch.Generator().manual_seed(0)).to(G.w_avg.device)
    w = G.mapping(z).double().cpu()
    mean = w.mean(0, keepdim=True)
    _, singular, components = torch.linalg.svd(w - mean, full_matrices=False)
    pca = {"comp": components[:, None].float(), "std": (singular / (len(w) - 1) ** 0.5).float(), "mean": mean.float()}
    return ganspace_directions(pca, G, source="PCA of the test model", group="GANSpace recipes (test model)")


def check_identity(editor: ChunkyEditor, images: list[np.ndarray], real: bool) -> list[Check]:
    """Identity distance of a face to itself (about 0) and to another face (over the model's threshold for
    "another person": 0.5 for 1 - cos ArcFace, 0.6 for dlib's embedding distance)."""
    identity = editor.identity()
    threshold = identity.different_person
    a, b = (uint8_to_tensor(image).to(editor.device) for image in images[:2])
    same, other = float(identity.distance(a, a)[0]), float(identity.distance(a, b)[0])
    return [
        Check("identity", "same face", PASS if abs(same) < 1e-3 else FAIL, f"{identity.name} {same:.5f}"),
        Check(
            "identity",
            "another face",
            (PASS if other > threshold else FAIL) if real else RANDOM,
            f"{identity.name} {other:.3f}",
        ),
    ]


def format_table(checks: Sequence[Check]) -> str:
    """The PASS/FAIL table, one line per check, and a summary line."""
    width = max([len(f"{c.group}: {c.name}") for c in checks] + [10])
    status_width = max([len(c.status) for c in checks] + [6])
    lines = [f"{'check':<{width}}  {'status':<{status_width}}  detail", "-" * (width + status_width + 40)]
    lines += [f"{c.group + ': ' + c.name:<{width}}  {c.status:<{status_width}}  {c.detail}".rstrip() for c in checks]
    failed = sum(c.status == FAIL for c in checks)
    passed = sum(c.status == PASS for c in checks)
    lines.append(f"{passed} passed, {failed} failed, {len(checks) - passed - failed} not applicable")
    return "\n".join(lines)
