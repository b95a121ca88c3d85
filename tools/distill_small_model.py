"""Distil the small face model: a 64 px StyleGAN2 that learns a real face generator (a DCGAN).

The teacher is the PyTorch-tutorial DCGAN generator shipped in the PyPI package ``gan-face-generate==1.1.1``
(``gan_face_generate/weights.tar``, trained on DigiFace-1M; install it with ``pip install --no-deps``).
The student is `chunky.generator.Generator` (the FFHQ model's architecture, narrower), so the file this
writes loads with ``Generator.from_checkpoint`` like the FFHQ checkpoint, and every code path runs on it.

Two phases:

1. **Auto-encoding** (the whole time budget). A small convolutional encoder (thrown away afterwards) reads
   the teacher's image and gives the student's synthesis a w code; both are trained end to end on the image
   (L1 at 64, 32, 16 and 8 px), on fresh teacher samples every step. The saved synthesis is the moving
   average of its weights.
   Why not regress teacher(z) from z directly: on CPU that learned too slowly. The 4x4 layout has to come out
   of a modulated convolution of the constant input; after 32k samples the image was still a blur (L1 0.24),
   where auto-encoding reached L1 0.18 after 9.6k samples. Training the mapping jointly with the encoder
   (regressing the encoder's code from z, and pulling the code toward that prediction) made training
   diverge after 45k samples.
2. **The mapping** (at the end, a few minutes). The student's z is the teacher's z in its first 100 entries.
   The encoder's codes of N teacher samples are fitted by least squares: code ≈ mean + A z. What z does not
   predict (the residual) is given to the student's other 28 entries of z: their weights B are the residual's
   top principal directions, scaled to its spread. The mapping network's weights are then set to compute that
   affine map exactly (`set_affine_mapping`; regressing it took too long). So mapping(z) spreads like the
   encoder's codes of real teacher samples (sharp faces, not averages), and shares with teacher(z) what z
   predicts.

Usage (seeded; resumable: a run continues from ``<out>.train.pt`` when it exists):
    python tools/distill_small_model.py --minutes 40 --out weights/small-face-64.pt
It prints and writes (``<out>.curve.json``) the curve (samples seen, seconds, the auto-encoder's L1 on 256
held-out teacher samples) and the mapping fit's figures, among them the per-z L1 to the teacher.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: chunky is beside tools/
from chunky.generator import Generator  # noqa: E402

TEACHER_Z = 100
STUDENT = {"size": 64, "style_dim": 128, "n_mlp": 4, "channels": {4: 256, 8: 256, 16: 128, 32: 64, 64: 32}}
SQRT2 = 2**0.5
CODE_PENALTY = 0.01  # per unit of the codes' mean square (they settle near 0.1: a 0.001 term)
GRADIENT_CLIP = 1.0  # largest gradient norm of a step, the other guard against divergence


class DCGANGenerator(nn.Module):
    """The teacher: the PyTorch-tutorial DCGAN generator (nz=100, ngf=64, nc=3), module names as its file.
    z [N, 100] -> image [N, 3, 64, 64] in [-1, 1]."""

    def __init__(self, nz: int = TEACHER_Z, ngf: int = 64, nc: int = 3):
        super().__init__()
        widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
        layers: list[nn.Module] = []
        for i in range(4):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride, pad, bias=False))
            layers.append(nn.BatchNorm2d(widths[i + 1]))
            layers.append(nn.ReLU(True))
        layers.append(nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False))
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z[:, :, None, None])


def teacher_weights_path() -> Path:
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("The teacher needs `pip install --no-deps gan-face-generate==1.1.1`.")
    return Path(list(spec.submodule_search_locations)[0]) / "weights.tar"


def load_teacher() -> DCGANGenerator:
    """The DCGAN teacher in eval mode (BatchNorm uses its running statistics), frozen."""
    state = torch.load(teacher_weights_path(), map_location="cpu", weights_only=True)["netG_state_dict"]
    teacher = DCGANGenerator()
    teacher.load_state_dict(state, strict=True)
    return teacher.eval().requires_grad_(False)


def encoder() -> nn.Module:
    """Image [N, 3, 64, 64] -> w [N, 128]."""
    return convolutional_reader(STUDENT["style_dim"])


def convolutional_reader(outputs: int) -> nn.Sequential:
    """Image [N, 3, 64, 64] -> [N, outputs]: four stride-2 blocks (32-256 channels) and a linear layer (the
    encoders here, and the polish's critic)."""
    layers: list[nn.Module] = []
    widths = [3, 32, 64, 128, 256]
    for i in range(4):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1))
        layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(widths[i + 1], widths[i + 1], 4, 2, 1))
        layers.append(nn.LeakyReLU(0.2))
    layers.append(nn.Flatten())
    layers.append(nn.Linear(256 * 16, outputs))
    return nn.Sequential(*layers)


def student_z(teacher_z: torch.Tensor, rng: torch.Generator, style_dim: int) -> torch.Tensor:
    """[N, style_dim]: the teacher's z followed by extra N(0, 1) entries."""
    extra = torch.randn(teacher_z.shape[0], style_dim - teacher_z.shape[1], generator=rng)
    return torch.cat([teacher_z, extra], dim=1)


def image_loss(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 at 64 px plus L1 at 32, 16 and 8 px (area averages): coarse structure gets its own signal."""
    loss = (image - target).abs().mean()
    for factor in (2, 4, 8):
        loss = loss + (F.avg_pool2d(image, factor) - F.avg_pool2d(target, factor)).abs().mean()
    return loss


def autoencoder_step(G: Generator, E: nn.Module, teacher: DCGANGenerator, z: torch.Tensor) -> torch.Tensor:
    """Phase 1 loss for teacher z [N, 100]: the teacher's image reconstructed through the encoder's code, plus a
    small penalty on the code's size. Without it the codes grew until the (not demodulated) RGB layers blew
    up: two runs diverged, after 25k and 45k samples."""
    with torch.no_grad():
        target = teacher(z)
    code = E(target)
    return image_loss(G.synthesis(code, noise_mode="none"), target) + CODE_PENALTY * code.square().mean()


@torch.no_grad()
def affine_code_model(
    E: nn.Module, teacher: DCGANGenerator, samples: int, rng: torch.Generator, extra_dims: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The codes of ``samples`` teacher samples as mean + A z + B z_extra (see the module docstring).

    Returns (mean [D], A [D, 100], B [D, extra_dims], the share of the codes' variance z predicts)."""
    z = torch.randn(samples, TEACHER_Z, generator=rng)
    codes = torch.cat([E(teacher(z[i : i + 500])) for i in range(0, samples, 500)])  # [samples, D]
    inputs = torch.cat([z, torch.ones(samples, 1)], dim=1)
    solution = torch.linalg.lstsq(inputs, codes).solution  # [101, D]
    A, mean = solution[:TEACHER_Z].T, solution[TEACHER_Z]
    residual = codes - inputs @ solution
    _, singular, directions = torch.linalg.svd(residual, full_matrices=False)
    B = directions[:extra_dims].T * (singular[:extra_dims] / (samples - 1) ** 0.5)
    explained = 1 - float(residual.var(dim=0).sum() / codes.var(dim=0).sum())
    return mean, A, B, explained


@torch.no_grad()
def set_affine_mapping(G: Generator, mean: torch.Tensor, A: torch.Tensor, B: torch.Tensor, offset: float = 3.0) -> None:
    """Make G's mapping network compute exactly w = offset + mean + [A B] PixelNorm(z), and shift every modulation's
    bias so the synthesis sees the same styles as for the code mean + [A B] PixelNorm(z).

    Leaky ReLUs are linear where their input is positive, so each layer is kept there by constants: the hidden
    layers carry PixelNorm(z) + 10 (its entries are N(0, 1), never below -10), and the last layer adds
    ``offset`` to codes whose entries spread about 0.3. Every use of w downstream is affine (the modulations,
    truncation toward w_avg, differences of codes), so the offset changes no image."""
    style_dim, layers = G.style_dim, [m for m in G.style if hasattr(m, "weight")]
    carry = 10.0
    M = torch.cat([A, B], dim=1)  # [D, style_dim]
    for index, layer in enumerate(layers):
        if index == len(layers) - 1:
            weight, bias = M / 2, (mean + offset - M @ torch.full((style_dim,), carry)) / SQRT2
        elif index == 0:
            weight, bias = torch.eye(style_dim), torch.full((style_dim,), carry)
        else:
            weight, bias = torch.eye(style_dim) / SQRT2, torch.zeros(style_dim)
        layer.weight.copy_(weight / layer.scale)  # EqualLinear multiplies by scale and lr_mul at run time
        layer.bias.copy_(bias / layer.lr_mul)
    shift = torch.full((style_dim,), offset)
    for _, modulated in G.modulated_layers(None):
        modulation = modulated.modulation
        modulation.bias.sub_((modulation.weight * modulation.scale) @ shift / modulation.lr_mul)


@torch.no_grad()
def per_z_error(G: Generator, teacher: DCGANGenerator, count: int = 256, seed: int = 12345) -> float:
    """Mean |student(z) - teacher(z)| over ``count`` held-out z (images in [-1, 1]; noise off)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, TEACHER_Z, generator=rng)
    image = G.synthesis(G.mapping(student_z(z, rng, G.style_dim)), noise_mode="none")
    return float((image - teacher(z)).abs().mean())


@torch.no_grad()
def autoencoder_error(
    G: Generator, E: nn.Module, teacher: DCGANGenerator, count: int = 256, seed: int = 12345
) -> float:
    """Mean |student(E(teacher(z))) - teacher(z)| over ``count`` held-out z."""
    z = torch.randn(count, TEACHER_Z, generator=torch.Generator().manual_seed(seed))
    target = teacher(z)
    return float((G.synthesis(E(target), noise_mode="none") - target).abs().mean())


def checkpoint_of(G: Generator) -> dict:
    """The public StyleGAN2 format: {'g_ema': state_dict, 'latent_avg': [style_dim]}."""
    state = {k: v.detach().clone().contiguous() for k, v in G.state_dict().items()}
    return {"g_ema": state, "latent_avg": G.mean_w(10_000, seed=0)[0].clone()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("weights/small-face-64.pt"))
    parser.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget of the auto-encoding phase")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--mapping-samples", type=int, default=8000, help="teacher samples for the mapping fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=200, help="steps between held-out evaluations")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher = load_teacher()
    state_path = args.out.with_suffix(".train.pt")
    torch.manual_seed(args.seed)  # initial weights only: the data stream has its own generator below
    G = Generator(**STUDENT).train()
    E = encoder()
    G_ema = Generator(**STUDENT).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    synthesis = [p for name, p in G.named_parameters() if not name.startswith("style.")]
    optimiser = torch.optim.Adam(synthesis + list(E.parameters()), lr=args.lr, betas=(0.9, 0.99))
    rng = torch.Generator().manual_seed(args.seed)
    run = {"curve": [], "step": 0, "samples": 0, "seconds": 0.0}
    if state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        G.load_state_dict(saved["G"])
        E.load_state_dict(saved["E"])
        G_ema.load_state_dict(saved["G_ema"])
        optimiser.load_state_dict(saved["optimiser"])
        rng.set_state(saved["rng"])
        run = saved["run"]
        print(f"resumed at step {run['step']}, {run['samples']} samples, {run['seconds']:.0f} s")

    start, already = time.time(), run["seconds"]
    while already + time.time() - start < args.minutes * 60:
        loss = autoencoder_step(G, E, teacher, torch.randn(args.batch, TEACHER_Z, generator=rng))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(synthesis + list(E.parameters()), GRADIENT_CLIP)
        optimiser.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + run["step"]) / (10 + run["step"]))
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - decay)
        run["step"] += 1
        run["samples"] += args.batch
        if run["step"] % args.eval_every == 0:
            run["seconds"] = round(already + time.time() - start, 1)
            point = {
                "step": run["step"],
                "samples": run["samples"],
                "seconds": run["seconds"],
                "loss": round(float(loss.detach()), 4),
                "heldout_autoencoder_l1_ema": round(autoencoder_error(G_ema, E, teacher), 4),
            }
            run["curve"].append(point)
            print(json.dumps(point), flush=True)
            save_state(state_path, G, E, G_ema, optimiser, rng, run)

    save_state(state_path, G, E, G_ema, optimiser, rng, run)
    started = time.time()
    final = copy.deepcopy(G_ema)  # the state keeps the synthesis as trained: the mapping stage can be rerun
    mean, A, B, explained = affine_code_model(E, teacher, args.mapping_samples, rng, G.style_dim - TEACHER_Z)
    set_affine_mapping(final, mean, A, B)
    final.w_avg.copy_(final.mean_w())
    run["mapping"] = {
        "teacher_samples": args.mapping_samples,
        "share_of_code_variance_predicted_by_z": round(explained, 4),
        "seconds": round(time.time() - started, 1),
        "heldout_autoencoder_l1_ema": round(autoencoder_error(G_ema, E, teacher), 4),
        "heldout_per_z_l1": round(per_z_error(final, teacher), 4),
    }
    print(json.dumps(run["mapping"]), flush=True)
    save_checkpoint(args, final, run)


def save_state(state_path: Path, G, E, G_ema, optimiser, rng, run: dict) -> None:
    """The training state to resume from, written atomically; the one before it is kept as ``.prev``."""
    state = {
        "G": G.state_dict(),
        "E": E.state_dict(),
        "G_ema": G_ema.state_dict(),
        "optimiser": optimiser.state_dict(),
        "rng": rng.get_state(),
        "run": run,
    }
    torch.save(state, state_path.with_suffix(".tmp"))
    if state_path.exists():
        state_path.replace(state_path.with_suffix(".prev"))
    state_path.with_suffix(".tmp").replace(state_path)


def save_checkpoint(args, G: Generator, run: dict) -> None:
    """The checkpoint (atomically) and beside it its curve and settings (``<out>.curve.json``)."""
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp")
    torch.save(checkpoint_of(G), temporary)
    temporary.replace(out)
    meta = {
        "student": {**STUDENT, "channels": {str(k): v for k, v in STUDENT["channels"].items()}},
        "teacher": "gan-face-generate==1.1.1 gan_face_generate/weights.tar (DCGAN, DigiFace-1M)",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu": cpu_model(),
        "curve": run["curve"],
        "mapping": run["mapping"],
    }
    out.with_suffix(".curve.json").write_text(json.dumps(meta, indent=1) + "\n")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
