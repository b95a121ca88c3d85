"""The paper's inversion table on any folders of photos: every method with the same budget, LPIPS
(AlexNet, 256 px; only with its ImageNet backbone), L2 (MSE at 256 px on [-1, 1]), identity distance (the
editor's identity model: 1 - cosine of ArcFace IR-SE50 embeddings of a fixed FFHQ crop, or offline the
Euclidean distance of dlib's face embeddings; neither is the paper's identity number, which is
CurricularFace cosine similarity on MTCNN-aligned faces) and seconds per image, as mean ± std, and per
photo the per-segment / global L2 ratio and which has the closer identity. Resumable; a bad photo is
reported and skipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from chunky.config import InversionConfig, preset
from chunky.editor import ChunkyEditor
from chunky.errors import ChunkyError, InvalidInputError
from chunky.grid import comparison_grid
from chunky.images import read_image, tensor_to_uint8
from chunky.metrics import l2_distance, lpips_distance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Method:
    space: str
    segmented: bool
    reg_weight: float = 0.0


METHODS = {
    "w": Method("w", False),
    "w+": Method("w+", False),
    "s": Method("s", False),
    "chunky-w": Method("w", True),
    "chunky-w+": Method("w+", True),
    "chunky-w+reg": Method("w+", True, 10.0),
    "chunky-s": Method("s", True),
}
# Values the paper reports (CelebA-HQ test faces), printed beside ours for reference: LPIPS, identity, L2.
# The paper's identity is measured differently (CurricularFace on MTCNN-aligned faces): not comparable.
# Per-segment methods start every segment from one code fitted to all of them in this share of the steps.
# Measured with the small model on 6 shared photos, 100 steps (per-segment / global W+ L2, mean): 0.630 with
# every segment starting at w_avg; 0.400, 0.457, 0.524 and 0.624 with 10, 20, 35 and 50 warm steps.
WARM_START_SHARE = 0.1
PAPER = {"w+": (0.368, 0.120, 0.044), "chunky-w+": (0.319, 0.094, 0.021)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
METRICS = ("lpips", "l2", "identity", "seconds")


def evaluate(
    editor: ChunkyEditor,
    images: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    methods: Sequence[str] = tuple(METHODS),
    steps: int = 200,
    limit: int | None = None,
    keep: Sequence[str] = ("background",),
    perceptual_loss: str | None = None,
    preset_name: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Run every method on every photo in ``images`` (a folder, a photo, or a list of them) and write table.md,
    table.csv, results.json and grid.png to ``out``.

    Finished photos are stored in ``out/per_image/`` and skipped when the same run is repeated.
    ``perceptual_loss`` is the optimisation's perceptual term ("none" optimises L2 only; default the model's
    own, `ChunkyEditor.default_perceptual`); the reported LPIPS is always AlexNet's, and only where its
    ImageNet backbone is loaded. ``preset_name`` ("preview", "balanced", "best"): every method runs that
    recipe in its own space instead of ``steps`` plain steps.

    Returns:
        {"table": {method: {metric: [mean, std]}}, "images": n done, "errors": {name: message},
         "pairs": {"chunky-w+ vs w+": {...}} when both ran}
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise InvalidInputError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
    paths = photo_paths(images)[:limit]
    out = Path(out)
    (out / "per_image").mkdir(parents=True, exist_ok=True)
    perceptual = editor.perceptual("lpips-alex") if editor.pretrained_perceptual else None
    identity = editor.identity()
    perceptual_loss = perceptual_loss or editor.default_perceptual
    if preset_name is not None:
        preset(preset_name)  # an unknown name fails here, before any photo is read
    run_id = _run_id(methods, steps, keep, perceptual_loss, editor.label, preset_name)

    results, errors, grid_rows = {}, {}, []
    for i, path in enumerate(paths):
        if progress is not None:
            progress(i, len(paths), path.name)
        record = out / "per_image" / f"{path.stem}-{run_id}.json"
        if record.exists():
            results[path.name] = json.loads(record.read_text())
            continue
        try:
            row, images_row = _evaluate_one(
                editor, path, methods, steps, keep, perceptual_loss, perceptual, identity, preset_name
            )
        except ChunkyError as error:
            errors[path.name] = str(error)
            log.warning("skipped %s: %s", path.name, error)
            continue
        results[path.name] = row
        record.write_text(json.dumps(row))
        if len(grid_rows) < 8:
            grid_rows.append(images_row)
    if progress is not None:
        progress(len(paths), len(paths), "done")

    table = summarise(results, methods)
    pairs = {f"{a} vs {b}": compare_pair(results, a, b) for a, b in PAIRS if a in methods and b in methods}
    budget = f"the {preset_name} preset's" if preset_name else steps
    _write_tables(out, table, len(results), budget, errors, identity.name, pairs, keep)
    if grid_rows:
        Image.fromarray(comparison_grid(grid_rows, ["photo", *methods], cell=192)).save(out / "grid.png")
    return {"table": table, "images": len(results), "errors": errors, "pairs": pairs}


PAIRS = (("chunky-w+", "w+"), ("chunky-w", "w"))  # per-segment codes against one code in the same space


def photo_paths(images: str | Path | Sequence[str | Path]) -> list[Path]:
    """The photos in ``images``: a folder (its image files, sorted), a photo, or a list of either."""
    sources = [images] if isinstance(images, (str, Path)) else list(images)
    paths = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InvalidInputError(f"{source} holds no photos ({', '.join(IMAGE_SUFFIXES)}).")
            paths += found
        elif source.is_file():
            paths.append(source)
        else:
            raise InvalidInputError(f"--images takes folders of photos or photos; {source} is neither.")
    names = [p.name for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # results are stored by file name
        raise InvalidInputError(f"Photos must have distinct file names; {repeated[0]!r} appears more than once.")
    return paths


def compare_pair(results: dict, method: str, baseline: str) -> dict:
    """Per photo: ``method``'s L2 over ``baseline``'s, and whether its identity distance is smaller.

    Returns {"l2_ratio": {photo: ratio}, "l2_ratio_mean": float, "identity_better": {photo: bool},
    "identity_better_share": float or None}."""
    ratios, better = {}, {}
    for photo, row in results.items():
        if method not in row or baseline not in row:
            continue
        ratios[photo] = row[method]["l2"] / max(row[baseline]["l2"], 1e-12)
        if row[method]["identity"] is not None and row[baseline]["identity"] is not None:
            better[photo] = row[method]["identity"] < row[baseline]["identity"]
    return {
        "l2_ratio": ratios,
        "l2_ratio_mean": float(np.mean(list(ratios.values()))) if ratios else None,
        "identity_better": better,
        "identity_better_share": float(np.mean(list(better.values()))) if better else None,
    }


def _run_id(methods, steps, keep, perceptual_loss, label: str, preset_name: str | None) -> str:
    """12 hex digits naming a run's settings: finished photos of the same run are skipped when it is repeated."""
    settings = [list(methods), steps, list(keep), perceptual_loss, label, WARM_START_SHARE]
    settings += [preset_name] if preset_name else []
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]


def _evaluate_one(editor, path, methods, steps, keep, perceptual_loss, perceptual, identity, preset_name):
    photo = read_image(path, name=path.name)
    aligned = editor.align(photo)
    segments = editor.segment(aligned.crop)
    kept = [n for n in keep if n in segments.names]
    row, images_row = {}, [aligned.crop]
    for name in methods:
        method = METHODS[name]
        config = method_config(editor, method, steps, perceptual_loss, preset_name)
        result = editor.invert(
            aligned.crop, segments if method.segmented else None, config=config, keep=kept if method.segmented else ()
        )
        composite, target = result.composite, result.target
        row[name] = {
            "lpips": None if perceptual is None else float(lpips_distance(composite, target, perceptual)[0]),
            "l2": float(l2_distance(composite, target)[0]),
            "identity": None if identity is None else float(identity.distance(composite, target)[0]),
            "seconds": result.seconds,
        }
        images_row.append(tensor_to_uint8(composite))
    return row, images_row


def method_config(
    editor: ChunkyEditor, method: Method, steps: int, perceptual_loss: str, preset_name: str | None = None
) -> InversionConfig:
    """How ``method`` inverts a photo: ``preset_name``'s recipe in the method's space, else ``steps`` steps.

    With the same ``steps`` a per-segment method spends ``WARM_START_SHARE`` of them on one code for all its
    segments (the warm start), and the rest on each segment's own code, so every method runs the same
    number of steps; a global method spends them all on its one code.
    """
    settings = dict(space=method.space, reg_weight=method.reg_weight, perceptual=perceptual_loss)
    if preset_name:
        return editor.preset(preset_name, **settings)
    warm = round(steps * WARM_START_SHARE) if method.segmented else 0
    return editor.default_config(steps=steps - warm, warm_start_steps=warm, **settings)


def summarise(results: dict, methods: Sequence[str]) -> dict:
    """{method: {metric: [mean, std]}} over the photos (identity: None when not measured)."""
    table = {}
    for name in methods:
        table[name] = {}
        for metric in METRICS:
            values = [r[name][metric] for r in results.values() if name in r and r[name][metric] is not None]
            table[name][metric] = [float(np.mean(values)), float(np.std(values))] if values else None
    return table


def _budget_note(steps: int | str) -> str:
    """How the per-segment methods share a budget of plain ``steps`` (presets have their own warm start)."""
    if not isinstance(steps, int):
        return ""
    warm = round(steps * WARM_START_SHARE)
    return f"; the per-segment methods spend {warm} of them on one code that all their segments start from"


def _write_tables(
    out: Path,
    table: dict,
    count: int,
    steps: int | str,
    errors: dict,
    identity_name: str,
    pairs: dict,
    keep: Sequence[str],
) -> None:
    def cell(value):
        return "n/a" if value is None else f"{value[0]:.4f} ± {value[1]:.4f}"

    lines = [
        f"Inversion on {count} photos, {steps} steps each{_budget_note(steps)} "
        "(LPIPS AlexNet and L2 at the image size, at most 256 px; "
        f"identity: {identity_name}, not the paper's CurricularFace similarity on MTCNN-aligned faces). "
        + (
            f"The per-segment methods take {', '.join(keep)} straight from the photo."
            if keep
            else "Every segment is projected (nothing is taken from the photo)."
        ),
        "",
        f"| method | LPIPS ↓ | L2 ↓ | {identity_name} ↓ | seconds | "
        "paper LPIPS / identity (CurricularFace, MTCNN; not comparable) / L2 |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in table.items():
        paper = " / ".join(f"{v:.3f}" for v in PAPER[name]) if name in PAPER else "—"
        lines.append(
            f"| {name} | {cell(metrics['lpips'])} | {cell(metrics['l2'])} | {cell(metrics['identity'])} | "
            f"{cell(metrics['seconds'])} | {paper} |"
        )
    for pair, figures in pairs.items():
        if figures["l2_ratio_mean"] is None:
            continue
        share = figures["identity_better_share"]
        lines += [
            "",
            f"{pair}: L2 ratio {figures['l2_ratio_mean']:.3f} on average"
            + ("" if share is None else f"; closer identity on {share:.0%} of the photos"),
            "",
            "| photo | L2 ratio | closer identity |",
            "|---|---|---|",
        ]
        for photo, ratio in figures["l2_ratio"].items():
            closer = figures["identity_better"].get(photo)
            lines.append(f"| {photo} | {ratio:.3f} | {'n/a' if closer is None else ('yes' if closer else 'no')} |")
    if errors:
        lines += ["", "Skipped:"] + [f"- {name}: {message}" for name, message in errors.items()]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")])
        for name, metrics in table.items():
            writer.writerow([name] + [v for m in METRICS for v in (metrics[m] or [math.nan, math.nan])])
    (out / "results.json").write_text(
        json.dumps(
            {
                "table": table,
                "images": count,
                "steps": steps,
                "errors": errors,
                "identity": identity_name,
                "pairs": pairs,
                "kept": list(keep),
            },
            indent=2,
        )
    )
