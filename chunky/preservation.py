"""How local an edit is, in numbers: what changed outside the edited segments, how much inside, and identity.

An edit of chosen segments moves only their codes, and the composite blends each render only where its segment
is, so outside the edited segments the picture should stay the reconstruction's pixels. `preservation` measures
that for one edit: outside the region the edited segments touch (every pixel where their masks are above 0), the
PSNR to the reconstruction, the share of pixels that changed by more than 2/255 in any channel, the largest
change and the LPIPS of the outside alone; inside, the mean change (an edit that does nothing shows 0); and the
identity distance of the photo to the reconstruction and to the edit. Images are [S, S, 3] uint8; changes are in
0-255 levels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from chunky.images import uint8_to_tensor
from chunky.metrics import lpips_distance

CHANGED_LEVELS = 2  # a pixel "changed" when a channel moved by more than this many of 255 levels


@dataclass(frozen=True)
class Preservation:
    """Attributes:
    region_share: share of the image inside the edited segments' region.
    outside_changed_share: share of the pixels outside it that changed by more than 2/255.
    outside_psnr_db: PSNR of the outside to the reconstruction's (inf: identical).
    outside_max_change: the largest change of a channel outside, in 0-255 levels.
    outside_lpips: LPIPS between the reconstruction and the edit with its region put back to the
        reconstruction (what the outside changes alone do); None without a perceptual model.
    inside_mean_change: mean absolute change inside the region, in 0-255 levels.
    photo_outside_psnr_db: PSNR of the edit's outside to the photo's.
    identity_name: the identity model's name ("dlib identity distance", ...); None without one.
    identity_reconstruction: identity distance photo -> reconstruction.
    identity_edit: identity distance photo -> edit.
    """

    region_share: float
    outside_changed_share: float
    outside_psnr_db: float
    outside_max_change: float
    outside_lpips: float | None
    inside_mean_change: float
    photo_outside_psnr_db: float
    identity_name: str | None = None
    identity_reconstruction: float | None = None
    identity_edit: float | None = None

    def line(self) -> str:
        """One compact line for a page or a caption."""
        parts = [
            f"outside the edit: {self.outside_changed_share:.1%} of pixels changed, PSNR {_db(self.outside_psnr_db)}",
            f"max {self.outside_max_change:.0f}/255",
        ]
        if self.outside_lpips is not None:
            parts.append(f"LPIPS {self.outside_lpips:.3f}")
        parts.append(f"inside: mean change {self.inside_mean_change:.1f}/255")
        if self.identity_edit is not None:
            parts.append(
                f"{self.identity_name}: photo to reconstruction {self.identity_reconstruction:.3f}, "
                f"to edit {self.identity_edit:.3f}"
            )
        return "; ".join(parts)

    def caption(self) -> str:
        """A short caption for a grid cell: outside changed share and PSNR, inside change, identity to the edit."""
        text = (
            f"outside: {self.outside_changed_share:.1%} changed, PSNR {_db(self.outside_psnr_db)}; "
            f"inside: {self.inside_mean_change:.1f}/255"
        )
        if self.identity_edit is not None:
            text += f"; identity {self.identity_edit:.2f}"
        return text

    def to_dict(self) -> dict:
        """Plain numbers for metrics.json (infinite PSNR written as null)."""
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, figures: dict) -> Preservation:
        """The inverse of `to_dict` (null PSNR read back as infinite)."""
        figures = dict(figures)
        for key in ("outside_psnr_db", "photo_outside_psnr_db"):
            figures[key] = math.inf if figures[key] is None else figures[key]
        return cls(**figures)


def preservation(
    photo: np.ndarray,
    reconstruction: np.ndarray,
    edited: np.ndarray,
    region: np.ndarray,
    *,
    perceptual: torch.nn.Module | None = None,
    identity=None,
) -> Preservation:
    """The figures of one edit.

    Args:
        photo, reconstruction, edited: [S, S, 3] uint8 (the aligned photo, the composite before the edit, after).
        region: [S, S] bool, the pixels the edited segments touch.
        perceptual: an LPIPS module for ``outside_lpips`` (None: not measured).
        identity: an identity model with ``distance(a, b)`` and ``name`` (None: not measured).
    """
    outside = ~region
    change = np.abs(edited.astype(np.int16) - reconstruction.astype(np.int16))  # [S, S, 3] levels
    outside_change = change[outside]  # [n, 3]
    figures = {
        "region_share": float(region.mean()),
        "outside_changed_share": float((outside_change > CHANGED_LEVELS).any(axis=1).mean()) if outside.any() else 0.0,
        "outside_psnr_db": _psnr(edited[outside], reconstruction[outside]),
        "outside_max_change": float(outside_change.max()) if outside_change.size else 0.0,
        "inside_mean_change": float(change[region].mean()) if region.any() else 0.0,
        "photo_outside_psnr_db": _psnr(edited[outside], photo[outside]),
        "outside_lpips": None,
    }
    if perceptual is not None:
        outside_only = np.where(region[..., None], reconstruction, edited)
        tensors = [uint8_to_tensor(image) for image in (reconstruction, outside_only)]
        figures["outside_lpips"] = float(lpips_distance(tensors[0], tensors[1], perceptual)[0])
    if identity is not None:
        photo_t, reconstruction_t, edited_t = (uint8_to_tensor(i) for i in (photo, reconstruction, edited))
        with torch.no_grad():
            distances = identity.distance(torch.cat([photo_t, photo_t]), torch.cat([reconstruction_t, edited_t]))
        figures["identity_name"] = identity.name
        figures["identity_reconstruction"] = float(distances[0])
        figures["identity_edit"] = float(distances[1])
    return Preservation(**figures)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of equal shape (inf when equal or empty)."""
    if a.size == 0:
        return math.inf
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _db(value: float) -> str:
    return "∞ (identical)" if math.isinf(value) else f"{value:.1f} dB"
