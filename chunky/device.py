"""Device and precision choices, in one place. The library defaults to CPU and float32."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from chunky.errors import InvalidInputError

if TYPE_CHECKING:
    from chunky.generator import Generator, Window

PRECISIONS = ("fp32", "bf16")
# bf16 rounds every activation, so it is chosen only where it clearly pays: it must save this share of the
# fp32 time. Measured fwd+bwd at 256 px, config-f 1024: 2.2x faster on an AMD EPYC and 2.6x on an Intel Xeon
# with AMX, 1.2x slower on another Intel Xeon with avx512_bf16 but no AMX (docs/speed.md).
BF16_MIN_SAVING = 0.10


def default_device() -> torch.device:
    """The GPU when one is usable, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """Context for running a forward pass at ``precision`` ("fp32": plain float32; "bf16": bfloat16
    autocast, images within ~1% of fp32; faster on some CPUs and slower on others: `choose_precision`
    measures which)."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision chosen for a device, with what it was chosen on.

    Attributes:
        precision: "fp32" or "bf16".
        seconds: precision -> seconds of one synthesis forward+backward pass (best of a few).
    """

    precision: str
    seconds: dict[str, float]

    @property
    def bf16_speedup(self) -> float:
        """fp32 time / bf16 time (above 1: bf16 is faster)."""
        return self.seconds["fp32"] / self.seconds["bf16"]


def pick_precision(seconds: dict[str, float], *, min_saving: float = BF16_MIN_SAVING) -> str:
    """The precision to use given ``seconds`` (precision -> seconds of the same work): bf16 when its time is
    at most ``1 - min_saving`` of the fp32 time, else fp32."""
    return "bf16" if seconds["bf16"] <= (1 - min_saving) * seconds["fp32"] else "fp32"


def synthesis_pass_seconds(
    G: Generator, size: int, precision: str, window: Window | None = None, batch: int = 1
) -> float:
    """Seconds of one synthesis pass of ``G`` at ``size`` px on its device: ``batch`` W+ codes at ``w_avg``,
    forward and backward to the codes (the weights stay frozen), as an inversion step runs it (on ``window``
    only, when given, as a small segment's step)."""
    device = G.w_avg.device
    codes = G.w_avg[:, None, :].expand(batch, G.n_latent, -1).clone().requires_grad_(True)  # [batch, n_latent, D]
    start = time.perf_counter()
    with autocast(precision, device):
        image = G.synthesis(codes, resolution=size, window=window)
    image.float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def choose_precision(
    G: Generator, size: int, *, repeat: int = 2, min_saving: float = BF16_MIN_SAVING
) -> PrecisionChoice:
    """Time `synthesis_pass_seconds` at ``size`` px in fp32 and in bf16, alternately (a warm-up round, then
    the best of ``repeat``), and choose with `pick_precision`: bf16 only where it saves at least
    ``min_saving`` of the time. GPUs are measured too: a pass costs milliseconds there, and bf16 is slow on
    GPUs without bf16 units. Six passes in all by default (6 s at 256 px on 2 Intel Xeon cores, config-f)."""
    times = {precision: [] for precision in PRECISIONS}
    for _ in range(repeat + 1):
        for precision in PRECISIONS:
            times[precision].append(synthesis_pass_seconds(G, size, precision))
    seconds = {precision: min(values[1:]) for precision, values in times.items()}
    G.forget_prepared_weights()  # the precision not chosen would keep its copy of the weights for ever
    return PrecisionChoice(pick_precision(seconds, min_saving=min_saving), seconds)


# The compiled layer tail (`chunky.fusion`) is kept only where it saves this share of a synthesis pass.
FUSION_MIN_SAVING = 0.05


@dataclass(frozen=True)
class FusionChoice:
    """Whether the synthesis layers' elementwise tails run compiled (`chunky.fusion`), with what it was chosen on.

    Attributes:
        fused: True when the compiled tail is in use.
        seconds: "op by op" / "fused" -> seconds of one synthesis forward+backward pass (best of a few); only
            "op by op" when the compiled tail could not be built.
        compile_seconds: seconds its first passes took beyond a compiled pass (compiling), 0 without one.
    """

    fused: bool
    seconds: dict[str, float]
    compile_seconds: float


def choose_fusion(
    G: Generator, size: int, precision: str, *, repeat: int = 2, min_saving: float = FUSION_MIN_SAVING
) -> FusionChoice:
    """Compile the layer tail (`chunky.fusion.use_compiled`), time `synthesis_pass_seconds` at ``size`` px in
    ``precision`` op by op and compiled, alternately (the best of ``repeat`` after a first pass of each, which
    compiles the forward and backward kernels; passes without gradients, windowed ones and batches of several codes
    compile their own, so an inversion after it compiles nothing more), and keep it compiled only where it saves at
    least ``min_saving`` of the time. A tail that fails to compile is not used. Compiling takes seconds (on 2 CPU
    cores about 15 s, 3 s with inductor's on-disk cache), so the app spends it in its background calibration.
    Measured on CPUs only: on a GPU the tail stays op by op."""
    from chunky import fusion
    from chunky.generator import Window

    fusion.use_compiled(False)
    first_plain = synthesis_pass_seconds(G, size, precision)
    if G.w_avg.device.type != "cpu":
        return FusionChoice(False, {"op by op": first_plain}, 0.0)
    fusion.use_compiled(True)
    first_fused = synthesis_pass_seconds(G, size, precision)
    # renders without gradients (for display, a stage's last step that only judges) compile their own kernels,
    # and so do windows (not square, noise cropped: a small segment's pass) and batches (the lower blocks of a
    # step's passes, `chunky.inversion.LowerBlocks`)
    window = Window(size // 4, 0, 0, size // 8, size // 16) if size >= 32 else None
    lower = min(size, 32)  # chunky.inversion.LOWER_BLOCKS_PX (inversion imports this module: no import back)
    synthesis_pass_seconds(G, lower, precision, batch=2)
    if window is not None:
        synthesis_pass_seconds(G, size, precision, window)
    with torch.no_grad(), autocast(precision, G.w_avg.device):
        G.synthesis(G.w_avg, resolution=size)
        G.synthesis(G.w_avg.expand(2, -1), resolution=lower)
        if window is not None:
            G.synthesis(G.w_avg, resolution=size, window=window)
    if not fusion.compiled_in_use():  # it failed (and said why)
        return FusionChoice(False, {"op by op": first_plain}, 0.0)
    times = {"op by op": [], "fused": []}
    for _ in range(repeat):
        for variant, values in times.items():
            fusion.use_compiled(variant == "fused")
            values.append(synthesis_pass_seconds(G, size, precision))
    seconds = {variant: min(values) for variant, values in times.items()}
    fused = fusion.compiled_in_use() and seconds["fused"] <= (1 - min_saving) * seconds["op by op"]
    fusion.use_compiled(fused)
    return FusionChoice(fused, seconds, max(0.0, first_fused - seconds["fused"]))
