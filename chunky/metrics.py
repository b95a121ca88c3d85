"""Image distances used for reporting (not for optimising): L2 and LPIPS at a fixed resolution.

Images are [N, 3, H, W] float in [-1, 1]; results are one float per image pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

METRIC_RESOLUTION = 256  # the standard protocol compares at 256 px


def _at_metric_size(image: torch.Tensor) -> torch.Tensor:
    if image.shape[-1] <= METRIC_RESOLUTION:
        return image.float()
    return F.interpolate(image.float(), size=(METRIC_RESOLUTION, METRIC_RESOLUTION), mode="area")


@torch.no_grad()
def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error on [-1, 1] images at (at most) 256 px: [N]."""
    return (_at_metric_size(a) - _at_metric_size(b)).square().mean(dim=(1, 2, 3))


@torch.no_grad()
def lpips_distance(a: torch.Tensor, b: torch.Tensor, perceptual: nn.Module) -> torch.Tensor:
    """LPIPS at (at most) 256 px: [N]. ``perceptual`` is a spatial or plain `lpips.LPIPS`."""
    distance = perceptual(_at_metric_size(a), _at_metric_size(b))
    return distance.mean(dim=(1, 2, 3))
