"""Masked perceptual and pixel losses, and the latent regulariser.

All images are float NCHW in [-1, 1]; masks are float [K, 1, H, W] in [0, 1]. A per-segment loss is a
weighted mean over its mask, so it is zero outside the segment's (dilated) region.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from chunky.errors import WeightsUnavailableError

_TORCHVISION_BACKBONES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def build_perceptual(kind: str, *, pretrained_backbone: bool = True) -> nn.Module | None:
    """The LPIPS metric as a spatial loss (returns a per-pixel distance map), or None for "none".

    Args:
        kind: "lpips-vgg", "lpips-alex" or "none".
        pretrained_backbone: False builds a randomly initialised backbone (tests and the test mode;
            offline). True uses torchvision's ImageNet weights, downloaded by torchvision on first use
            into ``$TORCH_HOME/hub/checkpoints``.
    """
    if kind == "none":
        return None
    from chunky.compat import ensure_torchvision

    ensure_torchvision()
    import lpips

    net = kind.removeprefix("lpips-")
    try:
        with warnings.catch_warnings():  # lpips calls torchvision with its deprecated `pretrained=` argument
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, spatial=True, pnet_rand=not pretrained_backbone, verbose=False)
    except OSError as error:  # urllib's URLError is an OSError: offline and not cached
        raise WeightsUnavailableError(
            f"LPIPS needs torchvision's ImageNet {net} backbone ({_TORCHVISION_BACKBONES[net]}), which could not be "
            f"downloaded ({error}). Place the file in $TORCH_HOME/hub/checkpoints/ or use perceptual='none'."
        ) from None
    return model.eval().requires_grad_(False)


def masked_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [K, C, H, W] weighted by ``masks`` [K, 1, H, W] -> [K] (0 for an empty mask)."""
    weight = masks.sum(dim=(1, 2, 3)) * values.shape[1]
    return (values * masks).sum(dim=(1, 2, 3)) / weight.clamp(min=1e-8)


def lpips_features(perceptual: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The unit-normalised backbone features LPIPS compares, for [N, 3, H, W] images in [-1, 1].

    Computing the target's features once per run (instead of once per step and segment) is what
    `segment_losses` takes ``target_features`` for."""
    outputs = perceptual.net(perceptual.scaling_layer(images))
    return [feature / (feature.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for feature in outputs]


def lpips_map(perceptual: nn.Module, features: list[torch.Tensor], target_features: list[torch.Tensor],
              size: tuple[int, int]) -> torch.Tensor:
    """Spatial LPIPS [N, 1, *size] from two feature lists (as `lpips.LPIPS(spatial=True)` computes it)."""
    total = 0
    for lin, a, b in zip(perceptual.lins, features, target_features):
        total = total + F.interpolate(lin((a - b).square()), size=size, mode="bilinear", align_corners=False)
    return total


def segment_losses(renders: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, *,
                   perceptual: nn.Module | None, pixel_weight: float,
                   target_features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per-segment reconstruction losses.

    Args:
        renders: [K, 3, R, R] one render per segment.
        target: [1, 3, R, R] the photo at the same resolution.
        masks: [K, 1, R, R] loss regions.
        perceptual: an `lpips.LPIPS` module, or None for no perceptual term.
        pixel_weight: weight of the masked mean squared error.
        target_features: ``lpips_features(perceptual, target)``, when already computed.

    Returns:
        {"lpips": [K], "l2": [K], "total": [K]} where total = lpips + pixel_weight * l2.
    """
    l2 = masked_mean((renders.float() - target.float()).square(), masks)
    if perceptual is None:
        lpips_value = torch.zeros_like(l2)
    else:
        if target_features is None:
            target_features = lpips_features(perceptual, target)
        distance = lpips_map(perceptual, lpips_features(perceptual, renders), target_features, renders.shape[-2:])
        lpips_value = masked_mean(distance.float(), masks)
    return {"lpips": lpips_value, "l2": l2, "total": lpips_value + pixel_weight * l2}


def latent_regulariser(codes: torch.Tensor | list[torch.Tensor], center: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """mean((code - center)^2) per segment, over layers and dimensions -> [K].

    ``codes`` is [K, ..., D] (W or W+) or, in S, a list of [K, C_l] (each layer weighs the same)."""
    if isinstance(codes, torch.Tensor):
        return (codes - center).square().flatten(1).mean(dim=1)
    per_layer = [(c - m).square().mean(dim=1) for c, m in zip(codes, center)]
    return torch.stack(per_layer, dim=1).mean(dim=1)
