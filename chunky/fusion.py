"""The elementwise tail of every synthesis layer as one compiled kernel, where that was measured to pay.

After its convolution a StyleGAN2 layer demodulates, adds its noise and its bias, applies the leaky ReLU and
its gain: run op by op, that is five passes over a full-size tensor forward and as many backward, a large
share of a bf16 pass on a CPU whose convolutions are fast. `layer_tail` computes it; after `use_compiled(True)`
it runs as one kernel made by ``torch.compile`` (inductor: generated C++ on a CPU; shapes are dynamic, so
windows of any size share it). `chunky.device.choose_fusion` switches it on where it measured faster, as the
app's start-up calibration does in the background. The compiled kernel computes the same expression in fp32
and rounds once, so bf16 results differ from the op-by-op ones by bf16 rounding. Should compiling or running
it fail (no C++ compiler, say), a warning is logged and the op-by-op tail is used from then on.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SQRT2 = math.sqrt(2.0)


def eager_tail(
    out: torch.Tensor,
    demod: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """``leaky_relu(out * demod + noise_weight * noise + bias, 0.2) * sqrt(2)``, op by op in ``out``'s dtype.

    Args:
        out: [N, C, H, W] the convolution's output before demodulation.
        demod: its demodulation multiplier in ``out``'s dtype: [N, C, 1, 1], or [1, C, H, W] per pixel.
        noise: [1 or N, 1, H, W] noise image, or None for none.
        noise_weight: [1] the noise strength (float32).
        bias: [1, C, 1, 1] the activation's bias (float32): a view of the parameter, not the parameter itself,
            whose shape ``torch.compile`` would take as fixed (one kernel per channel count).

    Returns:
        [N, C, H, W] in ``out``'s dtype.
    """
    out = out * demod
    if noise is not None:
        out = out + (noise_weight * noise).to(out.dtype)
    return F.leaky_relu(out + bias.to(out.dtype), 0.2) * SQRT2


_compiled: Callable | None = None  # the compiled tail, built on the first `use_compiled(True)`
_in_use = False
_failed = False  # set for good when the compiled tail failed
# Compiling is not thread-safe, and a new kind of input (another dtype, no gradient) compiles again: the app
# renders in several threads, so compiled calls take turns (each is a fraction of a millisecond once compiled).
_lock = threading.Lock()


def use_compiled(enabled: bool) -> None:
    """Run `layer_tail` as one compiled kernel (compiled on its first call for each kind of input), or op by op.
    After a failure of the compiled kernel this keeps it op by op."""
    global _compiled, _in_use
    if enabled and _compiled is None:
        _compiled = torch.compile(eager_tail, dynamic=True)
    _in_use = enabled and not _failed


def compiled_in_use() -> bool:
    """Whether `layer_tail` runs the compiled kernel."""
    return _in_use


def layer_tail(
    out: torch.Tensor,
    demod: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """`eager_tail`'s result: compiled after `use_compiled(True)`, else op by op. A failure of the compiled
    kernel is logged and switches it off for good; the op-by-op tail then computes this call."""
    global _failed
    if not _in_use:
        return eager_tail(out, demod, noise, noise_weight, bias)
    try:
        with _lock:
            return _compiled(out, demod, noise, noise_weight, bias)
    except Exception as error:  # a compiler missing or failing must not stop a render: the op-by-op tail is exact
        log.warning("the compiled layer tail failed (%s: %s); running op by op", type(error).__name__, error)
        _failed = True
        use_compiled(False)
        return eager_tail(out, demod, noise, noise_weight, bias)
