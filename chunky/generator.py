"""StyleGAN2 generator (config-f family) in plain PyTorch, loading the public PyTorch checkpoints.

The module tree mirrors the public PyTorch checkpoint layout (``style.*``, ``input.input``,
``conv1.*``, ``to_rgb1.*``, ``convs.*``, ``to_rgbs.*``, ``noises.*``), so a checkpoint loads with
``strict=True`` and nothing is renamed.

Four choices differ from the usual port and make it fast on CPU without changing the result:

* A modulated convolution is computed as ``conv(x * s, W) * d`` (scale the input channels by the style
  ``s``, convolve with the shared weight, scale the output channels by the demodulation ``d``) instead
  of building one weight per sample. This is the same function; the weight stays shared across the
  batch, so there is no grouped convolution, and back-propagating to the latent codes never needs the
  gradient of the weights.
* ``synthesis(..., resolution=R)`` stops after the block that produces ``R`` px and returns the skip
  RGB image there; the blocks above are never run.
* With frozen weights, each modulated convolution keeps its scaled, cast, channels-last weight and its
  demodulation sums between passes (`ModulatedConv2d.prepared_weights`): the same tensors, not rebuilt.
* With frozen weights, an upsampling convolution (stride-2 transposed, 3x3) runs as four ordinary convolutions,
  one per output phase (`phase_kernels`): the same sums in another order, and oneDNN's ordinary convolutions are
  much faster than its transposed ones (bf16 forward 2.2-2.5x on a Xeon with AMX).

Conventions: images are float NCHW RGB, nominally in [-1, 1] (not clamped). ``ws`` are W+ codes
``[N, n_latent, style_dim]`` or W codes ``[N, style_dim]``. The style space S is a list with one
``[N, C_l]`` tensor per modulated layer (``num_styles`` of them; 26 at 1024 px).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from chunky.errors import CheckpointError, InvalidInputError
from chunky.fusion import layer_tail

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("const", "random", "none")


def config_f_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """Channel width per resolution of the official StyleGAN2 configurations (config-f: multiplier 2)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {res: ch if res <= 32 else ch * channel_multiplier for res, ch in table.items() if res <= size}


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, and convolve each channel with a 2-D FIR kernel.

    Args:
        x: [N, C, H, W].
        kernel: [kh, kw], applied as a true convolution (flipped), as the reference does.
        up: integer upsampling factor.
        pad: (before, after) padding, the same on both axes, after upsampling.

    Returns:
        [N, C, H*up + pad[0] + pad[1] - kh + 1, W*up + pad[0] + pad[1] - kw + 1].
    """
    n, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(n, c, h * up, w * up)
        spread[:, :, ::up, ::up] = x
        x = spread
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1)).to(x.dtype).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


def _fir_kernel(taps: Sequence[float], gain: float) -> torch.Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum() * gain


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate: runtime weight scale ``lr_mul / sqrt(in_dim)``."""

    def __init__(
        self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0, bias_init: float = 0.0, activate: bool = False
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate
        self._scaled: dict = {}  # (dtype, inference mode) -> (weight alias, version, bias alias, version, scaled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, *self.scaled_parameters(x.device))
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activate else out

    def scaled_parameters(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight times ``scale`` [out, in] and the bias times ``lr_mul`` [out] as the linear layer takes
        them: under autocast on ``device``'s type, already in its dtype. Kept between calls while both stay the
        same tensors with the same contents (as `ModulatedConv2d.prepared_weights`); computed afresh while
        gradients flow to them. Autocast casts a frozen weight on every call: with 26 of these layers per
        render, that and the scaling were about 2% of a per-segment step (bf16, 2 Xeon cores)."""
        weight, bias = self.weight, self.bias
        if torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad):
            return weight * self.scale, bias * self.lr_mul
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else weight.dtype
        key = (dtype, torch.is_inference_mode_enabled())
        entry = self._scaled.get(key)
        if entry is None or not self._still_valid(entry):
            scaled = ((weight * self.scale).to(dtype), (bias * self.lr_mul).to(dtype))
            entry = (weight.detach(), weight._version, bias.detach(), bias._version, scaled)
            # stale entries go (with the old storage they hold); replaced, not mutated, for concurrent readers
            valid = {k: e for k, e in self._scaled.items() if self._still_valid(e)}
            self._scaled = {**valid, key: entry}
        return entry[4]

    def _still_valid(self, entry: tuple) -> bool:
        return _same_contents(entry[0], entry[1], self.weight) and _same_contents(entry[2], entry[3], self.bias)

    def __getstate__(self) -> dict:
        # copies and pickles start without scaled parameters
        return {**super().__getstate__(), "_scaled": {}}


class Blur(nn.Module):
    """FIR low-pass filter (kernel stored as a buffer, as in the checkpoint)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", _fir_kernel(taps, gain))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the skip RGB image."""

    def __init__(self, taps: Sequence[float]):
        super().__init__()
        self.register_buffer("kernel", _fir_kernel(taps, gain=4.0))
        p = len(taps) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)


# The output phases of a stride-2 transposed convolution with a 3x3 kernel: output pixel (2i + a, 2j + b) takes
# the kernel taps of parity (a, b), so each phase is a small ordinary convolution of the input. (rows, columns)
# of the kernel, reversed for a cross-correlation, and the padding of that convolution, per phase (a, b).
_EVEN_TAPS, _ODD_TAPS = [2, 0], [1]
_PHASES = (
    (0, 0, _EVEN_TAPS, _EVEN_TAPS, (1, 1)),
    (0, 1, _EVEN_TAPS, _ODD_TAPS, (1, 0)),
    (1, 0, _ODD_TAPS, _EVEN_TAPS, (0, 1)),
    (1, 1, _ODD_TAPS, _ODD_TAPS, (0, 0)),
)


def phase_kernels(weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The four ordinary convolution kernels of ``conv_transpose2d(x, weight, stride=2)`` for a [in, out, 3, 3]
    ``weight``: [out, in, kh, kw] with kh, kw in {1, 2}, one per output phase of `_PHASES`."""
    if weight.shape[-2:] != (3, 3):
        raise InvalidInputError(f"Phase kernels are for 3x3 kernels, got {tuple(weight.shape[-2:])}.")
    forward = weight.transpose(0, 1)
    return tuple(forward[:, :, rows][:, :, :, cols].contiguous() for _, _, rows, cols, _ in _PHASES)


class _PhaseTransposedConv(torch.autograd.Function):
    """``conv_transpose2d(x, weight, stride=2)`` for a frozen 3x3 ``weight`` [in, out, 3, 3], computed as four
    ordinary convolutions (``phases``, `phase_kernels`) written into the interleaved output; its gradient to x
    is the ordinary strided convolution ``conv2d(grad, weight, stride=2)``. The same sums in another order: on a
    CPU, oneDNN's bf16 transposed convolution took 2.2-2.5x the time of these four (2 Xeon cores with AMX).
    No gradient reaches the weight: `ModulatedConv2d` takes this path only while the weight is frozen."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, *phases: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        n, _, h, w = x.shape
        layout = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        size = (n, weight.shape[1], 2 * h + 1, 2 * w + 1)
        out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=layout)
        for (rows, cols, _, _, padding), kernel in zip(_PHASES, phases):
            out[:, :, rows::2, cols::2] = F.conv2d(x, kernel, padding=padding)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return (F.conv2d(grad, weight.to(grad.dtype), stride=2), None, *([None] * len(_PHASES)))


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` [N, C, H, W] is stored channels-last (and not also plain contiguous, as 1x1 images are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution, optionally with 2x upsampling.

    ``modulation`` maps a W code to the style ``s`` [N, in_channels]; `forward` takes ``s`` directly
    so the same layer serves W, W+ and S.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        blur_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(blur_taps) - 2) - (kernel_size - 1)
            self.blur = Blur(blur_taps, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self._prepared: dict = {}  # (dtype, layout, inference mode) -> (weight alias, version, prepared)

    def forward(self, x: torch.Tensor, style: torch.Tensor, mix: StyleMix | None = None) -> torch.Tensor:
        """x [N, in, H, W] and style [N, in] -> [N, out, H', W']. With ``mix``, x is one image [1, in, H, W]
        and style holds one row per code, [K, in]: each pixel is modulated (and demodulated) by its codes'
        styles weighted by ``mix`` (`StyleMix`)."""
        out, demod = self.convolve(x, style, mix)
        return out if demod is None else out * demod

    def convolve(
        self, x: torch.Tensor, style: torch.Tensor, mix: StyleMix | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` before its demodulation: the convolution of the modulated ``x``, [N, out, H', W'], and the
        demodulation multiplier in its dtype ([N, out, 1, 1]; [1, out, H', W'] with ``mix``), or None without
        demodulation. A `StyledConv` applies the multiplier in its fused tail (`chunky.fusion`)."""
        # A convolution with channels-last activations converts a weight to channels-last too (forward and
        # backward): a kept weight is kept in that layout. Not for other inputs, whose convolution it would change.
        weight, weight_norms, *phases = self.prepared_weights(x.dtype, is_channels_last(x))
        # Elementwise work stays in the activations' dtype: under bf16 autocast, mixing in fp32 styles
        # would promote every full-resolution tensor back to fp32.
        x = x * _per_pixel(style, x.shape[-1], mix).to(x.dtype)
        if self.upsample:
            frozen = not (torch.is_grad_enabled() and self.weight.requires_grad)
            if frozen:
                out = _PhaseTransposedConv.apply(x, weight, *phases)
            else:
                out = F.conv_transpose2d(x, weight, stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if not self.demodulate:
            return out, None
        # d[n, o] = 1 / sqrt(sum_{i,k} (W[o,i,k] * s[n,i])^2): a tiny matmul instead of a per-sample weight.
        demod = torch.rsqrt(style.square() @ weight_norms + 1e-8)
        return out, _per_pixel(demod, out.shape[-1], mix).to(out.dtype)

    def prepare_weights(self, dtype: torch.dtype, channels_last: bool = False) -> tuple[torch.Tensor | None, ...]:
        """The scaled weight as the convolution takes it, in ``dtype`` ([out, in, k, k]; [in, out, k, k]
        for the transposed convolution of an upsampling layer; stored channels-last if asked), for the
        demodulation the squared scaled weight summed over the kernel, [in, out] float32 (None without
        demodulation), then for an upsampling layer its four `phase_kernels` (same dtype and layout), which
        render it while the weight is frozen. Computed afresh."""
        weight = self.weight[0] * self.scale  # [out, in, k, k]
        conv_weight = weight.transpose(0, 1).to(dtype) if self.upsample else weight.to(dtype)
        phases = phase_kernels(conv_weight) if self.upsample else ()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        conv_weight, *phases = (w.contiguous(memory_format=layout) for w in (conv_weight, *phases))
        return conv_weight, weight.square().sum((2, 3)).t() if self.demodulate else None, *phases

    def prepared_weights(self, dtype: torch.dtype, channels_last: bool = False) -> tuple[torch.Tensor | None, ...]:
        """`prepare_weights`, kept between calls while the weight stays the same tensor with the same
        contents (its storage, layout and in-place version counter; one entry per ``dtype`` and layout). With
        frozen weights (inversion, rendering) this saves rescaling, casting, squaring and converting them on
        every pass; the convolutions get the same tensors, so the results are the same. While gradients flow
        to the weight (tuning) they are computed afresh as the convolution took them before (default layout):
        the gradients must reach the weight through them. Changes made through ``weight.data`` bypass the
        version counter and are not seen; change the weight itself (``with torch.no_grad(): weight.copy_(...)``)."""
        weight = self.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return self.prepare_weights(dtype)
        # inference-mode tensors cannot be saved for a later backward pass: they get their own entry
        key = (dtype, channels_last, torch.is_inference_mode_enabled())
        entry = self._prepared.get(key)
        if entry is None or not _same_contents(entry[0], entry[1], weight):
            # stale entries go (with the old storage they hold); replaced, not mutated, for concurrent readers
            valid = {k: e for k, e in self._prepared.items() if _same_contents(e[0], e[1], weight)}
            entry = (weight.detach(), weight._version, self.prepare_weights(dtype, channels_last))
            self._prepared = {**valid, key: entry}
        return entry[2]

    def __getstate__(self) -> dict:
        # copies and pickles (copy.deepcopy, torch.save of the module) start without prepared weights
        return {**super().__getstate__(), "_prepared": {}}


class StyleMix:
    """How K codes share one render (`Generator.synthesis` with ``mix``): every modulated layer scales each
    pixel by the mean of the K codes' styles there, weighted by the K segment masks area-averaged to that
    layer's resolution and normalised to sum to 1 (a pixel no mask covers weighs every code equally). It
    costs about one render instead of K; with one mask covering the whole image it is that code's render.
    Elsewhere it is not the per-segment composite: a layer's convolution sees its neighbours' styles, so
    near a boundary, and at coarse layers everywhere, a segment's pixels depend on the other codes too.

    Args:
        masks: [K, 1, R, R] segment masks in [0, 1]; R at least the render's resolution.
    """

    def __init__(self, masks: torch.Tensor):
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[-1] != masks.shape[-2]:
            raise InvalidInputError(f"StyleMix masks must be [K, 1, R, R], got {list(masks.shape)}.")
        self.masks = masks.float()
        self._weights: dict[int, torch.Tensor] = {}

    @property
    def count(self) -> int:
        return self.masks.shape[0]

    def weights(self, size: int) -> torch.Tensor:
        """[K, size, size] each code's weight per pixel at ``size`` px (summing to 1 over K); kept between calls."""
        if size not in self._weights:
            if size > self.masks.shape[-1]:
                raise InvalidInputError(f"StyleMix masks are {self.masks.shape[-1]} px; a {size} px layer needs more.")
            area = F.adaptive_avg_pool2d(self.masks, size)[:, 0]
            total = area.sum(dim=0, keepdim=True)
            even = torch.full_like(area, 1.0 / self.count)
            self._weights[size] = torch.where(total > 1e-6, area / total.clamp_min(1e-6), even)
        return self._weights[size]

    def spread(self, values: torch.Tensor, size: int) -> torch.Tensor:
        """[K, C] per-code values -> [1, C, size, size] their weighted mean per pixel, channels-last (as the
        activations are)."""
        mixed = torch.einsum("kc,khw->hwc", values.float(), self.weights(size))
        return mixed.permute(2, 0, 1)[None]


def _per_pixel(values: torch.Tensor, size: int, mix: StyleMix | None) -> torch.Tensor:
    """[N, C] values as a multiplier of [N, C, size, size] activations: [N, C, 1, 1], or with ``mix`` the
    [1, C, size, size] per-pixel mix of its K rows."""
    return values[:, :, None, None] if mix is None else mix.spread(values, size)


def _same_contents(source: torch.Tensor, version: int, weight: torch.Tensor) -> bool:
    """Whether ``weight`` still is the tensor ``source`` aliases (same storage, layout, dtype and device) and was
    not modified in place since its version counter read ``version``. ``source`` keeps that storage alive,
    so a new tensor cannot be given its address."""
    return (
        weight.data_ptr() == source.data_ptr()
        and weight._version == version
        and weight.dtype == source.dtype
        and weight.device == source.device
        and weight.shape == source.shape
        and weight.stride() == source.stride()
    )


class NoiseInjection(nn.Module):
    """The strength of the noise a `StyledConv` adds (the checkpoint's ``noise.weight``)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class BiasedLeakyReLU(nn.Module):
    """The bias of a `StyledConv`'s leaky ReLU (the checkpoint's ``activate.bias``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        *,
        upsample: bool = False,
        blur_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample, blur_taps=blur_taps)
        self.noise = NoiseInjection()
        self.activate = BiasedLeakyReLU(out_channels)

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None, mix: StyleMix | None = None
    ) -> torch.Tensor:
        """leaky_relu(demodulated conv(x) + noise strength * ``noise`` + bias, 0.2) * sqrt(2):
        `ModulatedConv2d.convolve`, then its elementwise tail (`chunky.fusion.layer_tail`)."""
        out, demod = self.conv.convolve(x, style, mix)
        return layer_tail(out, demod, noise, self.noise.weight, self.activate.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    def __init__(
        self, in_channels: int, style_dim: int, *, upsample: bool = True, blur_taps: Sequence[float] = (1, 3, 3, 1)
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_taps)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None, mix: StyleMix | None = None
    ) -> torch.Tensor:
        # The RGB path is cheap (3 channels), so it always runs in fp32: under bf16 autocast this keeps
        # the accumulated image accurate.
        with torch.autocast(x.device.type, enabled=False):
            out = self.conv(x.float(), style.float(), mix) + self.bias
            return out if skip is None else out + self.upsample(skip.float())


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        # channels-last activations let oneDNN's convolutions skip layout conversions: 5-15% faster on
        # CPU (measured at 128 and 256 px, bf16); the layout carries through every later layer.
        return self.input.expand(batch, -1, -1, -1).contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class Window:
    """A rectangle of the image, given at the coarse ``resolution`` from which synthesis is windowed:
    rows [top, top + height), columns [left, left + width) there; at output resolution R every value is
    multiplied by R / resolution."""

    resolution: int
    top: int
    left: int
    height: int
    width: int

    def crop(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """The window of ``x`` [..., H, W] where H = ``resolution * scale``."""
        return x[
            ...,
            self.top * scale : (self.top + self.height) * scale,
            self.left * scale : (self.left + self.width) * scale,
        ]


@dataclass(frozen=True)
class Trunk:
    """The lower synthesis blocks rendered once (`Generator.trunk`), reused by renders of codes that share their
    styles there, which then run only the blocks above.

    Attributes:
        blocks: how many upsampling blocks it ran (its output is ``4 << blocks`` px).
        features: [N, C, r, r] the last block's features (r = ``resolution``), before its RGB layer, which
            each render runs with its own style (a W+ row feeds that layer and the next block's first one).
        skip: [N, 3, r / 2, r / 2] the RGB image of the blocks below (fp32); None when ``blocks`` is 0.
    """

    blocks: int
    features: torch.Tensor
    skip: torch.Tensor | None

    @property
    def resolution(self) -> int:
        return 4 << self.blocks


def window_margin(blocks_above: int) -> int:
    """Output pixels next to an inner window edge that may differ from the full render, when the window
    starts ``blocks_above`` blocks below the output resolution: zero padding at the cut reaches 3 more
    px per block and doubles with each upsampling (measured 3, 9, 21, 45 px for 1-4 blocks; this
    returns 4, 12, 28, 60 for slack)."""
    margin = 0
    for _ in range(blocks_above):
        margin = 2 * margin + 4
    return margin


class Generator(nn.Module):
    """StyleGAN2 generator: ``mapping`` (z -> w) and ``synthesis`` (w / W+ / S -> image).

    Attributes:
        size: output resolution in px (a power of two, >= 8).
        style_dim: width of z, w and each W+ row.
        n_latent: number of W+ rows (``2 * log2(size) - 2``; 18 at 1024 px).
        num_styles: number of style-space (S) vectors (``3 * log2(size) - 4``; 26 at 1024 px).
        w_avg: [1, style_dim] mean w: the checkpoint's ``latent_avg``, else ``mean_w()``.
    """

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channels: Mapping[int, int],
        *,
        lr_mlp: float = 0.01,
        blur_taps: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log_size = int(math.log2(size))
        if size < 8 or 2**log_size != size:
            raise InvalidInputError(f"Generator size must be a power of two >= 8, got {size}.")
        missing = [2**i for i in range(2, log_size + 1) if 2**i not in channels]
        if missing:
            raise InvalidInputError(f"channels has no width for resolutions {missing}.")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.channels = {2**i: int(channels[2**i]) for i in range(2, log_size + 1)}
        self.n_latent = 2 * log_size - 2
        self.num_styles = 3 * log_size - 4
        self.num_noises = 2 * log_size - 3

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)]
        )
        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim, blur_taps=blur_taps)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_noises):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True, blur_taps=blur_taps))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim, blur_taps=blur_taps))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_taps=blur_taps))
            in_ch = out_ch
        self.register_buffer("w_avg", torch.zeros(1, style_dim), persistent=False)

    # ----------------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(cls, source: str | Path | Mapping, *, map_location: str | torch.device = "cpu") -> Generator:
        """Build a generator from a public PyTorch StyleGAN2 checkpoint.

        Args:
            source: a path, or an already-loaded dict: ``{'g_ema': state_dict, ...}`` with optional
                ``'latent_avg'`` [style_dim] or [1, style_dim], or a bare generator state dict.
                Files are read with ``weights_only=True`` (only tensors and plain containers).
            map_location: where to put the tensors while loading.

        Returns:
            The generator in eval mode, parameters frozen (``requires_grad=False``).

        Raises:
            CheckpointError: the file cannot be read or its tensors do not form a StyleGAN2 generator;
                the message lists what did not match.
        """
        if isinstance(source, (str, Path)):
            checkpoint = load_checkpoint_file(source, map_location=map_location)
        elif isinstance(source, Mapping):
            checkpoint = source
        else:
            raise CheckpointError(f"source must be a path or a dict, got {type(source).__name__}.")
        state, latent_avg = _split_checkpoint(checkpoint)
        generator = cls(**infer_architecture(state))
        _load_strict(generator, state)
        generator.eval().requires_grad_(False)
        if latent_avg is not None:
            generator.w_avg.copy_(latent_avg.reshape(1, -1).to(generator.w_avg))
        else:
            generator.w_avg.copy_(generator.mean_w())
        return generator

    @classmethod
    def from_pretrained(
        cls,
        name: str = "stylegan2-ffhq-1024.pt",
        *,
        cache_dir: str | Path | None = None,
        map_location: str | torch.device = "cpu",
    ) -> Generator:
        """Fetch a registered checkpoint (see ``weights/registry.toml``) and load it with `from_checkpoint`.

        Raises:
            WeightsUnavailableError: offline or unreachable with no local copy; says how to place it by hand.
        """
        from chunky.weights import fetch

        return cls.from_checkpoint(fetch(name, cache_dir=cache_dir), map_location=map_location)

    # ----------------------------------------------------------------------------------- mapping
    def mapping(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map z [N, style_dim] to w [N, style_dim]; ``truncation_psi < 1`` pulls w toward
        ``truncation_latent`` ([1, style_dim], default ``w_avg``): w' = t + psi * (w - t)."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise InvalidInputError(f"z must be [N, {self.style_dim}], got {list(z.shape)}.")
        w = self.style(z)
        if truncation_psi != 1.0:
            t = self.w_avg if truncation_latent is None else truncation_latent
            w = t + truncation_psi * (w - t)
        return w

    @torch.no_grad()
    def mean_w(self, n: int = 10_000, seed: int = 0) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` z drawn from a local RNG seeded with ``seed``: [1, style_dim]."""
        rng = torch.Generator().manual_seed(seed)
        device = self.w_avg.device
        total = torch.zeros(1, self.style_dim, dtype=torch.float64, device=device)
        for start in range(0, n, 4096):
            z = torch.randn(min(4096, n - start), self.style_dim, generator=rng).to(device)
            total += self.style(z).double().sum(0, keepdim=True)
        return (total / n).float()

    # --------------------------------------------------------------------------------- synthesis
    def num_styles_at(self, resolution: int | None = None) -> int:
        """Number of S vectors used to render at ``resolution`` (default: full size)."""
        return 2 + 3 * self._num_blocks(resolution)

    def styles(self, ws: torch.Tensor, resolution: int | None = None) -> list[torch.Tensor]:
        """Style-space (S) vectors of W / W+ codes: one [N, C_l] tensor per modulated layer, in
        rendering order (conv1, to_rgb1, then per block: up-conv, conv, to_rgb)."""
        ws = self._as_w_plus(ws)
        layers = self.modulated_layers(resolution)
        return [layer.modulation(ws[:, index]) for index, layer in layers]

    def synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        resolution: int | None = None,
        *,
        noise_generator: torch.Generator | None = None,
        window: Window | None = None,
        mix: StyleMix | None = None,
        trunk: Trunk | None = None,
    ) -> torch.Tensor:
        """Render W ([N, style_dim], broadcast to every layer) or W+ ([N, n_latent, style_dim]) codes.

        Args:
            ws: latent codes.
            noise_mode: "const" (the checkpoint's noise buffers), "random" (needs ``noise_generator``)
                or "none".
            resolution: output size, a power of two in [4, size]; blocks above it are not computed.
            window: see `synthesis_from_styles`.
            mix: draw the N codes into one image, each pixel modulated by its segments' codes (`StyleMix`
                with N masks).
            trunk: see `synthesis_from_styles`.

        Returns:
            [N, 3, R, R] image, nominally in [-1, 1]; [1, 3, R, R] with ``mix``.
        """
        return self.synthesis_from_styles(
            self.styles(ws, resolution),
            noise_mode,
            resolution,
            noise_generator=noise_generator,
            window=window,
            mix=mix,
            trunk=trunk,
        )

    def synthesis_from_styles(
        self,
        styles: Sequence[torch.Tensor],
        noise_mode: str = "const",
        resolution: int | None = None,
        *,
        noise_generator: torch.Generator | None = None,
        window: Window | None = None,
        mix: StyleMix | None = None,
        trunk: Trunk | None = None,
    ) -> torch.Tensor:
        """Render from style-space vectors (as returned by `styles`); same arguments as `synthesis`.

        ``window``: compute only a window of the image (see `Window`): [N, 3, h, w] instead of the whole
        [N, 3, R, R]. Blocks above ``window.resolution`` run on the window alone, so a small segment costs
        a fraction of a full render; the output equals the full render's window except within
        ``window_margin`` px of window edges that are inside the image.

        ``mix``: the N style rows are drawn into one [1, 3, R, R] image (`StyleMix`); not with a window.

        ``trunk``: the blocks up to ``trunk.resolution`` as `trunk` rendered them for one code, whose styles there
        these styles must share (only the blocks above run, and gradients stop at the trunk); a window must
        start at or above it. The result is the full render's.
        """
        blocks = self._num_blocks(resolution)
        expected = 2 + 3 * blocks
        if len(styles) != expected:
            raise InvalidInputError(
                f"styles must hold {expected} tensors for resolution {4 * 2**blocks}, got {len(styles)}."
            )
        batch = styles[0].shape[0]
        if mix is not None:
            if window is not None or mix.count != batch:
                raise InvalidInputError(
                    f"A StyleMix of {mix.count} masks mixes as many codes, without a window; "
                    f"got {batch} codes{' and a window' if window is not None else ''}."
                )
            batch = 1
        noises = self._noises(noise_mode, 1 + 2 * blocks, styles[0][:batch], noise_generator)
        if trunk is None:
            trunk = self._run_trunk(styles, 0, noises, mix, batch)
        else:
            self._check_trunk(trunk, blocks, window, mix)
        first = trunk.blocks
        out = trunk.features.expand(batch, -1, -1, -1)
        skip = None if trunk.skip is None else trunk.skip.expand(batch, -1, -1, -1)
        skip = self._rgb_layer(first)(out, styles[1 + 3 * first], skip, mix)
        for b in range(first, blocks):
            s_up, s_conv, s_rgb = styles[2 + 3 * b : 5 + 3 * b]
            block_noises = noises[1 + 2 * b : 3 + 2 * b]
            if window is not None and (4 << b) >= window.resolution:  # this block's input is 4 << b px
                if (4 << b) == window.resolution:  # entering the windowed part: crop features and RGB
                    out, skip = window.crop(out, 1), window.crop(skip, 1)
                block_noises = [
                    None if n is None else window.crop(n, (8 << b) // window.resolution) for n in block_noises
                ]
            out = self.convs[2 * b](out, s_up, block_noises[0], mix)
            out = self.convs[2 * b + 1](out, s_conv, block_noises[1], mix)
            skip = self.to_rgbs[b](out, s_rgb, skip, mix)
        return skip

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", resolution: int | None = None) -> torch.Tensor:
        return self.synthesis(ws, noise_mode, resolution)

    def synthesis_macs(
        self, resolution: int | None = None, trunk_resolution: int = 0, window: Window | None = None
    ) -> int:
        """Multiply-accumulates of the 3x3 convolutions of one render at ``resolution`` px: of the blocks above
        ``trunk_resolution`` only, when given, and of those from ``window.resolution`` on the window only. A
        device-independent measure of a pass's cost (RGB layers and elementwise work left out): on the FFHQ
        config-f architecture a 64 px render is 25.7 G, a 256 px one 83.6 G (3.26x; a 2-core CPU took 3.1-3.3x
        as long)."""
        total = 0 if trunk_resolution else 16 * 9 * self.channels[4] ** 2
        for b in range(self._num_blocks(resolution)):
            size_in, size = 4 << b, 8 << b
            if size <= trunk_resolution:
                continue
            pixels = size * size
            if window is not None and size_in >= window.resolution:
                pixels = window.height * window.width * (size // window.resolution) ** 2
            c_in, c_out = self.channels[size_in], self.channels[size]
            total += pixels * 9 * (c_in * c_out + c_out * c_out)
        return total

    def trunk(self, styles: Sequence[torch.Tensor], resolution: int, noise_mode: str = "const") -> Trunk:
        """The synthesis blocks up to ``resolution`` px (a power of two in [8, size / 2]) for the codes of
        ``styles`` (as returned by `styles`, for at least that resolution; usually one code), for renders whose
        styles share theirs up to there (`synthesis_from_styles` with ``trunk``). Gradients flow as in any
        render; compute it under ``torch.no_grad()`` to fit only the layers above."""
        blocks = self._num_blocks(resolution)
        if not 1 <= blocks < self._num_blocks(None):
            raise InvalidInputError(f"A trunk's resolution must be in [8, {self.size // 2}], got {resolution}.")
        if noise_mode == "random":
            raise InvalidInputError('A trunk is shared between renders, so its noise_mode must be "const" or "none".')
        noises = self._noises(noise_mode, 1 + 2 * blocks, styles[0], None)
        return self._run_trunk(styles, blocks, noises, None, styles[0].shape[0])

    def _run_trunk(
        self,
        styles: Sequence[torch.Tensor],
        blocks: int,
        noises: Sequence[torch.Tensor | None],
        mix: StyleMix | None,
        batch: int,
    ) -> Trunk:
        """The constant input, its convolution and the first ``blocks`` blocks, each block's RGB layer but the
        last's (which the caller runs, with its own style)."""
        out = self.conv1(self.input(batch), styles[0], noises[0], mix)
        skip = None
        for b in range(blocks):
            skip = self._rgb_layer(b)(out, styles[1 + 3 * b], skip, mix)
            out = self.convs[2 * b](out, styles[2 + 3 * b], noises[1 + 2 * b], mix)
            out = self.convs[2 * b + 1](out, styles[3 + 3 * b], noises[2 + 2 * b], mix)
        return Trunk(blocks, out, skip)

    def _rgb_layer(self, blocks: int) -> ToRGB:
        """The RGB layer of the features after ``blocks`` blocks (0: the constant input's)."""
        return self.to_rgb1 if blocks == 0 else self.to_rgbs[blocks - 1]

    def _check_trunk(self, trunk: Trunk, blocks: int, window: Window | None, mix: StyleMix | None) -> None:
        if trunk.blocks >= blocks:
            raise InvalidInputError(f"A trunk of {trunk.resolution} px leaves nothing to render at {4 << blocks} px.")
        if mix is not None:
            raise InvalidInputError("A trunk is one code's; it does not mix codes (StyleMix).")
        if window is not None and window.resolution < trunk.resolution:
            raise InvalidInputError(
                f"A window from {window.resolution} px starts inside a trunk of {trunk.resolution} px."
            )

    # ----------------------------------------------------------------------------------- helpers
    def _num_blocks(self, resolution: int | None) -> int:
        if resolution is None:
            resolution = self.size
        log_res = int(math.log2(resolution)) if resolution > 0 else -1
        if not 4 <= resolution <= self.size or 2**log_res != resolution:
            raise InvalidInputError(f"resolution must be a power of two in [4, {self.size}], got {resolution}.")
        return log_res - 2

    def prepared_bytes(self) -> int:
        """Bytes of the weights kept prepared (`ModulatedConv2d.prepared_weights`, `EqualLinear.scaled_parameters`):
        about a copy of the convolution weights per precision used, two of the upsampling layers' (their phase
        kernels), and a copy of the linear layers' (modulation and mapping) per precision."""
        kept = []
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                kept += [tensor for _, _, prepared in module._prepared.values() for tensor in prepared]
            elif isinstance(module, EqualLinear):
                kept += [tensor for *_, scaled in module._scaled.values() for tensor in scaled]
        return sum(tensor.numel() * tensor.element_size() for tensor in kept if tensor is not None)

    def forget_prepared_weights(self) -> None:
        """Drop every kept prepared weight (they are made again on the next pass that needs them)."""
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                module._prepared = {}
            elif isinstance(module, EqualLinear):
                module._scaled = {}

    def modulated_layers(self, resolution: int | None) -> list[tuple[int, nn.Module]]:
        """(W+ row, layer) pairs in rendering order, up to ``resolution``."""
        layers = [(0, self.conv1.conv), (1, self.to_rgb1.conv)]
        for b in range(self._num_blocks(resolution)):
            layers += [
                (1 + 2 * b, self.convs[2 * b].conv),
                (2 + 2 * b, self.convs[2 * b + 1].conv),
                (3 + 2 * b, self.to_rgbs[b].conv),
            ]
        return layers

    def _as_w_plus(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.ndim == 2 and ws.shape[1] == self.style_dim:
            return ws[:, None, :].expand(-1, self.n_latent, -1)
        if ws.ndim == 3 and ws.shape[1:] == (self.n_latent, self.style_dim):
            return ws
        raise InvalidInputError(
            f"ws must be W [N, {self.style_dim}] or W+ [N, {self.n_latent}, {self.style_dim}], got {list(ws.shape)}."
        )

    def _noises(
        self, mode: str, count: int, like: torch.Tensor, generator: torch.Generator | None
    ) -> list[torch.Tensor | None]:
        if mode == "none":
            return [None] * count
        buffers = [getattr(self.noises, f"noise_{i}") for i in range(count)]
        if mode == "const":
            return buffers
        if mode == "random":
            if generator is None:
                raise InvalidInputError('noise_mode="random" needs a noise_generator (a seeded torch.Generator).')
            n = like.shape[0]
            return [
                torch.randn((n, *b.shape[1:]), generator=generator, device=generator.device).to(b.device)
                for b in buffers
            ]
        raise InvalidInputError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}.")


def random_generator(
    size: int = 32, style_dim: int = 32, n_mlp: int = 2, channels: Mapping[int, int] | None = None, *, seed: int = 0
) -> Generator:
    """A generator with random tensors from a local RNG seeded with ``seed``, for tests, benchmarks and
    the test mode: weights, constant input and noise images drawn as at initialisation, every bias and
    noise strength moved off its initial value by N(0, 0.1) so that each term shows; FIR kernels exact.
    ``w_avg`` is set to ``mean_w()``. ``channels`` defaults to 16 up to 16 px, then 8."""
    if channels is None:
        channels = {2**i: 16 if i <= 4 else 8 for i in range(2, int(math.log2(size)) + 1)}
    generator = Generator(size, style_dim, n_mlp, channels)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in generator.state_dict(keep_vars=True).items():
            noise = torch.randn(tensor.shape, generator=rng)
            if name.endswith("kernel"):
                continue
            if name.endswith(("bias", "noise.weight")):
                tensor.add_(0.1 * noise)
            elif name.startswith("style."):
                tensor.copy_(noise / 0.01)  # EqualLinear stores weight / lr_mul
            else:
                tensor.copy_(noise)
        generator.w_avg.copy_(generator.mean_w(2048, seed=seed))
    return generator.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------- loading
def load_checkpoint_file(path: str | Path, *, map_location: str | torch.device = "cpu") -> Mapping:
    """Read a checkpoint file safely (``weights_only=True``; ``argparse.Namespace`` of training
    checkpoints is allowed since it only holds plain values)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for unreadable or unsafe files
        raise CheckpointError(
            f"Could not read {str(path)!r} as a PyTorch checkpoint with weights_only=True "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "Expected the public StyleGAN2 PyTorch format {'g_ema': state_dict, 'latent_avg': tensor}."
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(checkpoint).__name__}, expected a dict of tensors.")
    return checkpoint


def _split_checkpoint(checkpoint: Mapping) -> tuple[Mapping[str, torch.Tensor], torch.Tensor | None]:
    state = checkpoint.get("g_ema", checkpoint)
    if not isinstance(state, Mapping) or "style.1.weight" not in state:
        keys = sorted(str(k) for k in checkpoint)[:8]
        raise CheckpointError(
            f"Not a StyleGAN2 generator checkpoint: expected a 'g_ema' state dict or a bare generator state dict "
            f"with 'style.1.weight'; found keys {keys}."
        )
    latent_avg = checkpoint.get("latent_avg")
    return state, latent_avg if isinstance(latent_avg, torch.Tensor) else None


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict:
    """Constructor arguments (size, style_dim, n_mlp, channels) read off a generator state dict's shapes."""
    try:
        style_dim = state["style.1.weight"].shape[1]
        n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
        num_rgbs = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
        channels = {4: state["conv1.conv.weight"].shape[1]}
        for i in range(num_rgbs):
            channels[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    except (KeyError, IndexError, AttributeError) as error:
        raise CheckpointError(
            f"Not a StyleGAN2 generator state dict: cannot read its architecture (missing {error})."
        ) from None
    return {"size": 2 ** (num_rgbs + 2), "style_dim": int(style_dim), "n_mlp": n_mlp, "channels": channels}


def _load_strict(generator: Generator, state: Mapping[str, torch.Tensor]) -> None:
    expected = generator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and (not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:4])})")
        arch = infer_architecture(state)
        raise CheckpointError(
            f"Checkpoint does not match a StyleGAN2 generator of size {arch['size']}, style_dim {arch['style_dim']}, "
            f"n_mlp {arch['n_mlp']}: " + "; ".join(parts) + "."
        )
    generator.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
