"""Conversions between the internal image convention and everything else, in one place.

Internal: float32 NCHW RGB in [-1, 1]. External: uint8 HWC RGB arrays in [0, 255] and PIL images.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] or [3, H, W] float in [-1, 1] (clamped) -> [H, W, 3] uint8 in [0, 255]."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    scaled = (image.detach().float().clamp(-1, 1) + 1) * 127.5
    return scaled.round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """[H, W, 3] uint8 in [0, 255] -> [1, 3, H, W] float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float() / 127.5 - 1


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] float in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(tensor_to_uint8(image))
