"""Give the small face model a learned mapping: z -> the code of the teacher's own picture of z.

`tools/distill_small_model.py` leaves a synthesis that renders faces from codes and an affine mapping (z predicts
54% of the codes' variance): its samples are averaged, blurry faces. This stage keeps the synthesis and replaces
the mapping, in two steps:

1. **An encoder of the synthesis.** A small convolutional encoder (thrown away afterwards) learns to find, for a
   teacher image, the W code the frozen synthesis renders it from (L1 at 64, 32, 16 and 8 px, fresh teacher
   samples every step).
2. **The mapping.** The encoder's codes of ``--pairs`` teacher samples are the targets: a fresh mapping network
   (``--mlp`` layers, StyleGAN2's own) learns z -> code by regression (mean squared error; the student's z is the
   teacher's z followed by extra entries, which it learns to ignore). A nonlinear network predicts much more of
   the code than the affine fit, and codes it predicts render as faces, not as averages of faces.

Usage (seeded):
    python tools/remap_small_model.py --start weights/small-face-64.pt --out weights/small-face-64.pt \\
        --encoder-minutes 15 --mapping-minutes 5
It prints and writes (under "remap" in ``<out>.curve.json``) both curves, the share of the codes' variance the
mapping predicts on held-out pairs, the per-z L1 to the teacher and dlib's detection rate on 64 samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: chunky is beside tools/
sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_small_model import (  # noqa: E402
    GRADIENT_CLIP,
    TEACHER_Z,
    checkpoint_of,
    cpu_model,
    encoder,
    image_loss,
    load_teacher,
    per_z_error,
    student_z,
)
from polish_small_model import detection_rate  # noqa: E402

from chunky.generator import Generator, infer_architecture  # noqa: E402

MAPPING_LR = 1e-3  # the effective rate on the mapping's weights (Adam's rate divided by EqualLinear's lr_mul)


def train_encoder(G: Generator, teacher, minutes: float, batch: int, rng: torch.Generator) -> tuple:
    """An encoder of G's frozen synthesis: teacher image -> W code. Returns (encoder, curve)."""
    E = encoder()
    with torch.no_grad():  # start from the mean code: the synthesis was trained on codes around it
        E[-1].bias.copy_(G.w_avg[0])
        E[-1].weight.mul_(0.1)
    optimiser = torch.optim.Adam(E.parameters(), lr=1e-3, betas=(0.9, 0.99))
    G.requires_grad_(False)
    curve, step, start = [], 0, time.time()
    while time.time() - start < minutes * 60:
        with torch.no_grad():
            target = teacher(torch.randn(batch, TEACHER_Z, generator=rng))
        loss = image_loss(G.synthesis(E(target), noise_mode="none"), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(E.parameters(), GRADIENT_CLIP)
        optimiser.step()
        step += 1
        if step % 100 == 0:
            point = {"step": step, "samples": step * batch, "seconds": round(time.time() - start, 1)}
            point["heldout_reconstruction_l1"] = round(reconstruction_error(G, E, teacher), 4)
            curve.append(point)
            print(json.dumps(point), flush=True)
    return E.eval().requires_grad_(False), curve


@torch.no_grad()
def reconstruction_error(G: Generator, E, teacher, count: int = 128, seed: int = 12345) -> float:
    """Mean |G.synthesis(E(teacher(z))) - teacher(z)| over ``count`` held-out z (images in [-1, 1])."""
    target = teacher(torch.randn(count, TEACHER_Z, generator=torch.Generator().manual_seed(seed)))
    return float((G.synthesis(E(target), noise_mode="none") - target).abs().mean())


@torch.no_grad()
def code_pairs(E, teacher, count: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher z [count, 100], the encoder's codes of teacher(z) [count, style_dim])."""
    z = torch.randn(count, TEACHER_Z, generator=rng)
    codes = torch.cat([E(teacher(z[i : i + 500])) for i in range(0, count, 500)])
    return z, codes


def train_mapping(G: Generator, z: torch.Tensor, codes: torch.Tensor, minutes: float, rng: torch.Generator) -> list:
    """Fit G's mapping network to z -> codes (the last 1/10 of the pairs held out). Returns the curve."""
    held = len(z) // 10
    train_z, train_codes, test_z, test_codes = z[held:], codes[held:], z[:held], codes[:held]
    test_input = student_z(test_z, torch.Generator().manual_seed(7), G.style_dim)
    mapping = [p for name, p in G.named_parameters() if name.startswith("style.")]
    lr_mul = G.style[1].lr_mul
    optimiser = torch.optim.Adam(mapping, lr=MAPPING_LR / lr_mul, betas=(0.9, 0.99))
    scheduler_start, curve, step = time.time(), [], 0
    while time.time() - scheduler_start < minutes * 60:
        pick = torch.randint(0, len(train_z), (256,), generator=rng)
        prediction = G.style(student_z(train_z[pick], rng, G.style_dim))
        loss = F.mse_loss(prediction, train_codes[pick])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if step % 500 == 0:
            with torch.no_grad():
                residual = (G.style(test_input) - test_codes).var(dim=0).sum()
                explained = 1 - float(residual / test_codes.var(dim=0).sum())
            point = {"step": step, "seconds": round(time.time() - scheduler_start, 1), "train_mse": float(loss)}
            point["heldout_share_of_code_variance_predicted"] = round(explained, 4)
            curve.append(point)
            print(json.dumps(point), flush=True)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=Path, default=Path("weights/small-face-64.pt"), help="checkpoint to remap")
    parser.add_argument("--out", type=Path, default=Path("weights/small-face-64.pt"))
    parser.add_argument("--encoder-minutes", type=float, default=15.0)
    parser.add_argument("--mapping-minutes", type=float, default=5.0)
    parser.add_argument("--pairs", type=int, default=40_000, help="teacher samples whose codes the mapping learns")
    parser.add_argument("--mlp", type=int, default=8, help="layers of the new mapping network")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the encoder's and the new mapping's initial weights
    rng = torch.Generator().manual_seed(args.seed)

    teacher = load_teacher()
    old = Generator.from_checkpoint(args.start)
    E, encoder_curve = train_encoder(old, teacher, args.encoder_minutes, args.batch, rng)
    started = time.time()
    z, codes = code_pairs(E, teacher, args.pairs, rng)
    pairs_seconds = round(time.time() - started, 1)

    architecture = infer_architecture(old.state_dict()) | {"n_mlp": args.mlp}
    G = Generator(**architecture)
    synthesis = {k: v for k, v in old.state_dict().items() if not k.startswith("style.")}
    missing, unexpected = G.load_state_dict(synthesis, strict=False)
    assert not unexpected and all(k.startswith("style.") for k in missing), (missing, unexpected)
    mapping_curve = train_mapping(G.train(), z, codes, args.mapping_minutes, rng)
    G.eval().requires_grad_(False)
    G.w_avg.copy_(G.mean_w())

    report = {
        "start": str(args.start),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu_model(),
        "encoder_curve": encoder_curve,
        "pairs_seconds": pairs_seconds,
        "mapping_curve": mapping_curve,
        "heldout_per_z_l1": round(per_z_error(G, teacher), 4),
        "dlib_detection_64_at_0.7": detection_rate(G),
    }
    print(json.dumps({k: report[k] for k in ("heldout_per_z_l1", "dlib_detection_64_at_0.7")}), flush=True)
    temporary = args.out.with_suffix(".tmp")
    torch.save(checkpoint_of(G), temporary)
    temporary.replace(args.out)
    curve_path = args.out.with_suffix(".curve.json")
    meta = json.loads(curve_path.read_text()) if curve_path.exists() else {}
    meta["remap"] = report
    curve_path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
