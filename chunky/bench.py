"""Speed benchmarks: ``python -m chunky.bench generator``.

Prints absolute times (best of ``--repeat`` runs) and ratios measured in the same run, with the
machine's description. Random weights: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from chunky.device import autocast
from chunky.generator import ModulatedConv2d, config_f_channels, random_generator


def machine_description() -> str:
    """One line naming the CPU, thread count and library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return f"{cpu}; torch {torch.__version__}; {torch.get_num_threads()} threads; {os.cpu_count()} logical CPUs"


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of ``repeat`` timed calls after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _per_sample_weight_forward(self: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The textbook formulation the reference port uses: one modulated weight per sample, grouped conv.
    Used only to measure what the shared-weight formulation saves."""
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


def bench_generator(repeat: int = 3, seed: int = 0) -> list[dict]:
    """Time the FFHQ config-f 1024 architecture, batch 1: forward, and forward+backward to the W+ codes."""
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
    for resolution in (256, 1024):
        for precision in ("fp32", "bf16"):
            rows.append({
                "resolution": resolution, "precision": precision,
                "forward_s": best_time(lambda: forward(resolution, precision), repeat),
                "forward_backward_s": best_time(lambda: forward_backward(resolution, precision), repeat),
            })
    with per_sample_weights():
        rows.append({
            "resolution": 256, "precision": "fp32 (per-sample weights)",
            "forward_s": best_time(lambda: forward(256, "fp32"), repeat),
            "forward_backward_s": best_time(lambda: forward_backward(256, "fp32"), repeat),
        })
    return rows


def print_generator_table(rows: list[dict]) -> None:
    print(f"StyleGAN2 FFHQ config-f 1024 synthesis, batch 1 -- {machine_description()}")
    print(f"{'output px':>9} | {'precision':<26} | {'forward s':>9} | {'fwd+bwd s':>9}")
    for r in rows:
        print(f"{r['resolution']:>9} | {r['precision']:<26} | {r['forward_s']:>9.3f} | {r['forward_backward_s']:>9.3f}")
    get = {(r["resolution"], r["precision"]): r for r in rows}
    r256, r1024 = get[256, "fp32"], get[1024, "fp32"]
    naive = get[256, "fp32 (per-sample weights)"]
    bf16 = get[256, "bf16"]
    print("ratios (same run):")
    print(f"  full 1024 px / 256 px-limited synthesis, fp32: forward {r1024['forward_s'] / r256['forward_s']:.2f}x, "
          f"fwd+bwd {r1024['forward_backward_s'] / r256['forward_backward_s']:.2f}x")
    print(f"  fp32 / bf16 at 256 px: forward {r256['forward_s'] / bf16['forward_s']:.2f}x, "
          f"fwd+bwd {r256['forward_backward_s'] / bf16['forward_backward_s']:.2f}x")
    print(f"  per-sample weights / shared weights at 256 px fp32: forward {naive['forward_s'] / r256['forward_s']:.2f}x, "
          f"fwd+bwd {naive['forward_backward_s'] / r256['forward_backward_s']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chunky.bench", description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["generator"], nargs="?", default="generator")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best is reported)")
    args = parser.parse_args(argv)
    if args.which == "generator":
        print_generator_table(bench_generator(args.repeat))


if __name__ == "__main__":
    main()
