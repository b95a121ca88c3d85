"""Polish the small face model: per-z regression to the teacher plus an adversarial term, from a checkpoint.

`tools/distill_small_model.py` makes a student whose synthesis renders faces from codes and whose mapping is an
affine fit: its samples follow the teacher's layout and colours but are blurry (per-z L1 0.28 to the teacher).
This stage trains the whole student (mapping and synthesis) on fresh teacher samples, the pix2pix recipe:

    loss = multi-scale L1(student(z), teacher(z)) + ADVERSARIAL_WEIGHT * softplus(-D(student(z)))

where D, a small convolutional critic, learns teacher samples from student samples (non-saturating loss, R1
penalty on the teacher samples every ``R1_EVERY`` steps). The L1 keeps each sample the teacher's picture of z;
the critic punishes the blur that regression alone settles for. The saved generator is the moving average.

Usage (seeded; resumable: a run continues from ``<out>.polish.pt`` when it exists):
    python tools/polish_small_model.py --start weights/small-face-64.pt --minutes 60 --out weights/small-face-64.pt
It prints and appends to ``<out>.curve.json`` (under "polish") the curve: samples seen, seconds, the per-z L1 of
the moving average on 256 held-out z, and the share of 64 held-out samples (truncation 0.7) in which dlib's HOG
detector finds a face.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: chunky is beside tools/
sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_small_model import (  # noqa: E402
    GRADIENT_CLIP,
    TEACHER_Z,
    checkpoint_of,
    convolutional_reader,
    cpu_model,
    load_teacher,
    per_z_error,
    student_z,
)

from chunky.generator import Generator  # noqa: E402

ADVERSARIAL_WEIGHT = 0.1  # the critic's share of the student's loss (see --adversarial-weight)
R1_WEIGHT = 1.0
R1_EVERY = 4


def critic() -> nn.Module:
    """Image [N, 3, 64, 64] -> realness [N]: the encoders' convolutional reader with one output."""
    return nn.Sequential(convolutional_reader(1), nn.Flatten(0))


def coarse_loss(image: torch.Tensor, target: torch.Tensor, smallest: int) -> torch.Tensor:
    """L1 between area averages at 64 / ``smallest`` px and every coarser octave down to 8 px: the layout and the
    colours of the teacher's picture, leaving finer detail to the critic. ``smallest`` 1 is the full multi-scale
    L1 of the distillation (64, 32, 16 and 8 px)."""
    loss = image.new_zeros(())
    factor = smallest
    while factor <= 8:
        loss = loss + (F.avg_pool2d(image, factor) - F.avg_pool2d(target, factor)).abs().mean()
        factor *= 2
    return loss


def student_images(G: Generator, z: torch.Tensor, extra: torch.Generator) -> torch.Tensor:
    """Student samples [N, 3, 64, 64] for teacher z [N, 100] (noise off, untruncated)."""
    return G.synthesis(G.mapping(student_z(z, extra, G.style_dim)), noise_mode="none")


def critic_step(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, r1_weight: float) -> torch.Tensor:
    """Non-saturating critic loss, with the R1 gradient penalty on the real images when ``r1_weight`` > 0 (lazy:
    call it with the weight every ``R1_EVERY`` steps, 0 in between)."""
    loss = F.softplus(D(fake.detach())).mean()
    if r1_weight > 0:
        real = real.detach().requires_grad_(True)
        realness = D(real)
        (gradient,) = torch.autograd.grad(realness.sum(), real, create_graph=True)
        loss = loss + F.softplus(-realness).mean() + r1_weight * R1_EVERY / 2 * gradient.square().sum([1, 2, 3]).mean()
    else:
        loss = loss + F.softplus(-D(real)).mean()
    return loss


@torch.no_grad()
def detection_rate(G: Generator, count: int = 64, seed: int = 777) -> float | None:
    """Share of ``count`` seeded samples at truncation 0.7 in which dlib finds a face (None without dlib)."""
    try:
        from chunky.dlib_faces import DlibDetector
        from chunky.images import tensor_to_uint8

        detector = DlibDetector()
    except Exception:  # dlib or its model files missing: the curve simply lacks the column
        return None
    z = torch.randn(count, G.style_dim, generator=torch.Generator().manual_seed(seed))
    images = G.synthesis(G.mapping(z, 0.7), noise_mode="none")
    return sum(bool(detector.detect(tensor_to_uint8(image))) for image in images) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=Path, default=Path("weights/small-face-64.pt"), help="checkpoint to polish")
    parser.add_argument("--out", type=Path, default=Path("weights/small-face-64.pt"))
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget, resumed runs included")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adversarial-weight", type=float, default=ADVERSARIAL_WEIGHT)
    parser.add_argument("--r1", type=float, default=R1_WEIGHT, help="R1 penalty weight (gamma) on teacher samples")
    parser.add_argument(
        "--coarsest-detail", type=int, default=1, choices=(1, 2, 4, 8), help="L1 from 64/N px down to 8 px"
    )
    parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load_teacher()
    state_path = args.out.with_suffix(".polish.pt")
    torch.manual_seed(args.seed)  # the critic's initial weights; the data stream has its own generator
    G = Generator.from_checkpoint(args.start).train().requires_grad_(True)  # loaded frozen, for inference
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    D = critic()
    optimiser_G = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.99))
    optimiser_D = torch.optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.99))
    rng = torch.Generator().manual_seed(args.seed)
    run = {"curve": [], "step": 0, "samples": 0, "seconds": 0.0, "start": str(args.start)}
    if state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        G.load_state_dict(saved["G"])
        G_ema.load_state_dict(saved["G_ema"])
        D.load_state_dict(saved["D"])
        optimiser_G.load_state_dict(saved["optimiser_G"])
        optimiser_D.load_state_dict(saved["optimiser_D"])
        rng.set_state(saved["rng"])
        run = saved["run"]
        print(f"resumed at step {run['step']}, {run['samples']} samples, {run['seconds']:.0f} s")
    else:
        run["curve"].append(evaluation(G_ema, teacher, run))

    start, already = time.time(), run["seconds"]
    while already + time.time() - start < args.minutes * 60:
        z = torch.randn(args.batch, TEACHER_Z, generator=rng)
        with torch.no_grad():
            real = teacher(z)
        fake = student_images(G, z, rng)
        D.requires_grad_(False)
        regression = coarse_loss(fake, real, args.coarsest_detail)
        loss = regression + args.adversarial_weight * F.softplus(-D(fake)).mean()
        optimiser_G.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(G.parameters(), GRADIENT_CLIP)
        optimiser_G.step()
        D.requires_grad_(True)
        critic_loss = critic_step(D, real, fake, args.r1 if run["step"] % R1_EVERY == 0 else 0.0)
        optimiser_D.zero_grad(set_to_none=True)
        critic_loss.backward()
        optimiser_D.step()
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - args.ema)
        run["step"] += 1
        run["samples"] += args.batch
        if run["step"] % args.eval_every == 0:
            run["seconds"] = round(already + time.time() - start, 1)
            point = evaluation(G_ema, teacher, run)
            point["regression"] = round(float(regression.detach()), 4)
            point["critic"] = round(float(critic_loss.detach()), 4)
            run["curve"].append(point)
            print(json.dumps(point), flush=True)
            save_state(state_path, G, G_ema, D, optimiser_G, optimiser_D, rng, run)

    run["seconds"] = round(already + time.time() - start, 1)
    save_state(state_path, G, G_ema, D, optimiser_G, optimiser_D, rng, run)
    final = copy.deepcopy(G_ema)
    final.w_avg.copy_(final.mean_w())
    save_checkpoint(args, final, run)


def evaluation(G: Generator, teacher, run: dict) -> dict:
    """One point of the curve: samples, seconds, held-out per-z L1 and dlib detection rate of ``G``."""
    G.w_avg.copy_(G.mean_w(2048))
    return {
        "step": run["step"],
        "samples": run["samples"],
        "seconds": run["seconds"],
        "heldout_per_z_l1_ema": round(per_z_error(G, teacher), 4),
        "dlib_detection_64_at_0.7": detection_rate(G),
    }


def save_state(state_path: Path, G, G_ema, D, optimiser_G, optimiser_D, rng, run: dict) -> None:
    """The training state to resume from, written atomically."""
    state = {
        "G": G.state_dict(),
        "G_ema": G_ema.state_dict(),
        "D": D.state_dict(),
        "optimiser_G": optimiser_G.state_dict(),
        "optimiser_D": optimiser_D.state_dict(),
        "rng": rng.get_state(),
        "run": run,
    }
    temporary = state_path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(state_path)


def save_checkpoint(args, G: Generator, run: dict) -> None:
    """The checkpoint (atomically); its curve and settings go under "polish" in ``<out>.curve.json``."""
    out = args.out
    curve_path = out.with_suffix(".curve.json")
    meta = json.loads(curve_path.read_text()) if curve_path.exists() else {}
    meta["polish"] = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu_model(),
        "curve": run["curve"],
    }
    temporary = out.with_suffix(".tmp")
    torch.save(checkpoint_of(G), temporary)
    temporary.replace(out)
    curve_path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
