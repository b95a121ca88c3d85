"""Level-set refinement of segment boundaries (ChunkyGAN, Sec. 3.3).

The boundary between two segments is the zero level of phi (positive inside the first segment) and
evolves as phi' = phi + dt * (F + smoothness * curvature) * |grad phi|. The speed F compares how well
each side's render matches the photo, F = |I - I_second| - |I - I_first|: the first segment grows where
the second one's render is worse and shrinks where its own is, so a boundary that cuts through
features the renders get wrong moves off them onto pixels both sides reproduce. Motion is limited to
a band around the initial boundary.

Images are float [1, 3, H, W] / [K, 3, H, W] in [-1, 1]; masks [K, 1, H, W] in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from chunky.errors import InvalidInputError


def refine_boundary(
    masks: torch.Tensor,
    photo: torch.Tensor,
    renders: torch.Tensor,
    first: int,
    second: int,
    *,
    steps: int = 12,
    dt: float = 1.0,
    smoothness: float = 0.3,
    band_px: int = 8,
    tolerance: float = 0.05,
) -> torch.Tensor:
    """Move the boundary between segments ``first`` and ``second``.

    Args:
        masks: [K, 1, H, W] segments (thresholded at 0.5 inside the pair's region).
        photo: [1, 3, H, W] the photo.
        renders: [K, 3, H, W] each segment's render (a kept segment's render is the photo).
        first, second: the two segments; pixels move only between them, inside their union.
        steps, dt: number and size of level-set steps (at most ``dt`` px per step).
        smoothness: weight of the curvature term (keeps the boundary smooth).
        band_px: the boundary moves at most this far from where it started.
        tolerance: error differences (mean absolute, [0, 2] scale) below this do not move the boundary.

    Returns:
        [K, 1, H, W] masks; only pixels of the pair's union within ``band_px`` of the boundary change.
    """
    k = masks.shape[0]
    if not (0 <= first < k and 0 <= second < k) or first == second:
        raise InvalidInputError(f"first and second must be two different segment indices in [0, {k - 1}].")
    region = ((masks[first, 0] > 0.5) | (masks[second, 0] > 0.5)).cpu().numpy()
    inside = (masks[first, 0] > 0.5).cpu().numpy() & region
    if not inside.any() or not (region & ~inside).any():
        return masks.clone()
    error_first = (photo[0] - renders[first]).abs().mean(0).cpu().numpy()
    error_second = (photo[0] - renders[second]).abs().mean(0).cpu().numpy()
    difference = error_second - error_first
    speed = np.sign(difference) * np.clip(np.abs(difference) - tolerance, 0, None)
    speed = np.clip(speed / max(float(np.abs(speed).max()), 1e-8), -1, 1)

    phi = _signed_distance(inside)
    start = phi.copy()
    for _ in range(steps):
        grad_y, grad_x = np.gradient(phi)
        norm = np.sqrt(grad_x**2 + grad_y**2) + 1e-8
        curvature = np.gradient(grad_x / norm, axis=1) + np.gradient(grad_y / norm, axis=0)
        phi = phi + dt * (speed + smoothness * curvature) * norm
        phi = np.clip(phi, start - band_px, start + band_px)  # stay within the band
        phi[~region] = start[~region]
    inside_now = torch.from_numpy(phi[region] > 0).to(masks.device, masks.dtype)
    where = torch.from_numpy(region).to(masks.device)
    out = masks.clone()
    out[first, 0][where] = inside_now
    out[second, 0][where] = 1 - inside_now
    return out


def refine_all(
    masks: torch.Tensor, photo: torch.Tensor, renders: torch.Tensor, segments: Sequence[int] | None = None, **options
) -> torch.Tensor:
    """Refine every boundary between touching segments, or only those involving ``segments``."""
    chosen = set(range(masks.shape[0]) if segments is None else segments)
    hard = masks[:, 0] > 0.5
    grown = torch.nn.functional.max_pool2d(hard[:, None].float(), 3, stride=1, padding=1)[:, 0] > 0
    out = masks
    for a in range(masks.shape[0]):
        for b in range(a + 1, masks.shape[0]):
            if (a in chosen or b in chosen) and (grown[a] & hard[b]).any():
                out = refine_boundary(out, photo, renders, a, b, **options)
    return out


def _signed_distance(inside: np.ndarray) -> np.ndarray:
    """Signed distance in pixels: positive inside, negative outside, about +-0.5 at the boundary."""
    inside_u8 = inside.astype(np.uint8)
    to_outside = cv2.distanceTransform(inside_u8, cv2.DIST_L2, 5)
    to_inside = cv2.distanceTransform(1 - inside_u8, cv2.DIST_L2, 5)
    return (to_outside - to_inside).astype(np.float64) - 0.5 * inside + 0.5 * (1 - inside)
