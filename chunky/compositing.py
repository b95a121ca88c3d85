"""Rebuild the photo from per-segment renders: soft composite and Poisson stitching.

Images: float [1, 3, H, W] / renders [K, 3, H, W] in [-1, 1]; masks [K, 1, H, W] in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chunky.images import tensor_to_uint8, uint8_to_tensor
from chunky.segmentation import dilate_masks

FEATHER_PX = 2  # chosen by measurement: see docs/fidelity.md, "Compositing"


def feather(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Soften masks [K, 1, H, W] with a box blur of ``radius`` px (two passes, close to a Gaussian)."""
    if radius <= 0:
        return masks
    size = 2 * radius + 1
    for _ in range(2):
        masks = F.avg_pool2d(F.pad(masks, (radius,) * 4, mode="replicate"), size, stride=1)
    return masks


def soft_composite(
    renders: torch.Tensor,
    masks: torch.Tensor,
    photo: torch.Tensor,
    *,
    keep: Sequence[int] = (),
    feather_px: int = FEATHER_PX,
    dilate_px: int = 0,
) -> torch.Tensor:
    """O = sum_i G(w_i) * s_i with normalised feathered weights s_i, each cut to the pixels its render
    was fitted on.

    A render is only accurate inside its loss region (its mask grown by ``dilate_px``, as in
    `InversionConfig.dilate_px`), so its feathered weight is zeroed outside that region: two renders
    blend only where both were fitted. With ``dilate_px=0`` nothing overlaps and the composite is the
    hard one (each pixel from its own segment's render); hide such seams with `poisson_stitch`.
    Pixels outside every mask, and every pixel of a kept segment (mask 1), are exactly the photo.

    Args:
        renders: [K, 3, H, W] one render per segment (a kept segment's render is ignored).
        masks: [K, 1, H, W] the segments.
        photo: [1, 3, H, W].
        keep: indices of segments whose pixels come straight from the photo.
        feather_px: box-blur radius of the weights (two passes); only matters inside the overlap.
        dilate_px: how far each segment's loss region reached past its mask when it was fitted.

    Returns:
        [1, 3, H, W].
    """
    fitted = (dilate_masks(masks, dilate_px) > 0).to(masks.dtype)  # [K, 1, H, W]
    soft = torch.maximum(feather(masks, feather_px), masks) * fitted
    coverage = masks.sum(dim=0, keepdim=True).clamp(max=1.0)  # [1, 1, H, W]; 0 outside every mask
    kept = set(keep)
    projected = [k for k in range(masks.shape[0]) if k not in kept]
    # A kept segment's "render" is the photo: every one of its own pixels is exactly the photo.
    kept_weight = soft[list(keep)].amax(dim=0, keepdim=True) if keep else torch.zeros_like(coverage)
    if projected:
        w = soft[projected]
        total = w.sum(dim=0, keepdim=True)
        mix = (renders[projected] * w).sum(dim=0, keepdim=True) / total.clamp(min=1e-8)
        mix = torch.where(total > 1e-8, mix, photo)
    else:
        mix = photo
    inside = kept_weight * photo + (1 - kept_weight) * mix
    return coverage * inside + (1 - coverage) * photo


def poisson_stitch(
    renders: torch.Tensor, masks: torch.Tensor, base: torch.Tensor, *, keep: Sequence[int] = (), threshold: float = 0.5
) -> torch.Tensor:
    """Paste each projected segment's render into ``base`` with Poisson (seamless) cloning, so its
    colours match the surroundings at the seam; pixels outside ``mask > threshold`` are unchanged.

    Args:
        renders: [K, 3, H, W]; masks: [K, 1, H, W]; base: [1, 3, H, W] (usually the soft composite).

    Returns:
        [1, 3, H, W].
    """
    pad = 8  # OpenCV's seamlessClone misplaces masks that touch the image border
    result = np.pad(tensor_to_uint8(base), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    kept = set(keep)
    for k in range(masks.shape[0]):
        if k in kept:
            continue
        region = (masks[k, 0] > threshold).cpu().numpy().astype(np.uint8) * 255
        if region.sum() == 0:
            continue
        region = np.pad(region, pad)
        source = np.pad(tensor_to_uint8(renders[k : k + 1]), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
        x, y, w, h = cv2.boundingRect(region)
        center = (x + w // 2, y + h // 2)
        cloned = cv2.seamlessClone(source, result, region, center, cv2.NORMAL_CLONE)
        result = np.where(region[..., None] > 0, cloned, result)  # never touch pixels outside the mask
    return uint8_to_tensor(result[pad:-pad, pad:-pad]).to(base.device)
