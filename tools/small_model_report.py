"""Measure the small face model the way the README reports it, with dlib's real face detector.

For 200 seeded samples each: the share in which dlib's HOG detector finds a face (images upscaled to 256 px),
for the student at truncation 0.7 (the app's default) and 1.0, along W interpolations and style mixes, and
for the teacher untruncated and with z scaled by 0.7; the student's per-z L1 error against the teacher;
and the mean landmark positions of the student's samples (the crop template, `chunky.editor.SMALL_TEMPLATE`).

Usage: python tools/small_model_report.py [--samples 200] [--out report.json] [--figure samples.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_small_model import TEACHER_Z, cpu_model, load_teacher, per_z_error  # noqa: E402

from chunky.dlib_faces import DlibDetector  # noqa: E402
from chunky.editor import SMALL_MODEL  # noqa: E402
from chunky.generator import Generator  # noqa: E402
from chunky.images import tensor_to_uint8  # noqa: E402


def detected(detector: DlibDetector, images: torch.Tensor) -> list:
    """For each [3, H, W] image in [-1, 1]: its largest face's [5, 2] landmarks as fractions of the side, or None."""
    found = []
    for image in images:
        faces = detector.detect(tensor_to_uint8(image))
        found.append(None if not faces else faces[0].landmarks / image.shape[-1])
    return found


def rate(found: list) -> float:
    return float(np.mean([f is not None for f in found]))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled weights/" + SMALL_MODEL)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")
    parser.add_argument("--figure", type=Path, default=None, help="write teacher / student samples (same z) here")
    args = parser.parse_args()
    start = time.time()
    from chunky.weights import fetch

    G = Generator.from_checkpoint(args.checkpoint or fetch(SMALL_MODEL))
    detector = DlibDetector()
    rng = torch.Generator().manual_seed(args.seed)
    n = args.samples
    z = torch.randn(n, G.style_dim, generator=rng)
    z2 = torch.randn(n, G.style_dim, generator=rng)
    w, w2 = G.mapping(z, 0.7), G.mapping(z2, 0.7)
    report = {"samples": n, "seed": args.seed, "cpu": cpu_model()}
    truncated = detected(detector, G.synthesis(w))
    report["student_truncation_0.7"] = rate(truncated)
    report["student_truncation_1.0"] = rate(detected(detector, G.synthesis(G.mapping(z))))
    report["student_w_midpoints_0.7"] = rate(detected(detector, G.synthesis((w + w2) / 2)))
    mixed = torch.cat([w[:, None].expand(-1, 4, -1), w2[:, None].expand(-1, G.n_latent - 4, -1)], dim=1)
    report["student_style_mix_rows_0_3_0.7"] = rate(detected(detector, G.synthesis(mixed)))
    teacher = load_teacher()
    tz = torch.randn(n, TEACHER_Z, generator=rng)
    report["teacher_untruncated"] = rate(detected(detector, teacher(tz)))
    report["teacher_z_times_0.7"] = rate(detected(detector, teacher(0.7 * tz)))
    report["student_per_z_l1_vs_teacher"] = per_z_error(G, teacher, count=n)
    points = np.stack([f for f in truncated if f is not None])
    report["student_mean_landmarks"] = np.round(points.mean(0), 4).tolist()
    mirrored = (points + points[:, [1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]) / 2  # left-right symmetric template
    report["student_symmetric_template"] = np.round(mirrored.mean(0), 3).tolist()
    report["seconds"] = round(time.time() - start, 1)
    if args.figure:
        shown = torch.randn(8, TEACHER_Z, generator=torch.Generator().manual_seed(args.seed + 1))
        extra = torch.randn(8, G.style_dim - TEACHER_Z, generator=torch.Generator().manual_seed(args.seed + 2))
        students = G.synthesis(G.mapping(torch.cat([shown, extra], dim=1)))
        rows = [[tensor_to_uint8(image) for image in teacher(shown)], [tensor_to_uint8(image) for image in students]]
        grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(args.figure)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
