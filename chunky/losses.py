"""Masked perceptual and pixel losses, and the latent regulariser.

All images are float NCHW in [-1, 1]; masks are float [K, 1, H, W] in [0, 1]. A per-segment loss is a
weighted mean over its mask, so it is zero outside the segment's (dilated) region.
"""

from __future__ import annotations

import copy
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from chunky.errors import CheckpointError
from chunky.generator import is_channels_last

# torchvision's ImageNet files for the LPIPS backbones, by registry name (weights/registry.toml).
LPIPS_BACKBONES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
CONTEXT_DILATE_PX = 3  # a 7x7 max filter, as the authors' tool dilates the mask before pasting


def build_perceptual(kind: str, *, pretrained_backbone: bool = True) -> nn.Module | None:
    """The LPIPS metric as a spatial loss (returns a per-pixel distance map), or None for "none".

    Args:
        kind: "lpips-vgg", "lpips-alex" or "none".
        pretrained_backbone: False builds a randomly initialised backbone (tests and the test mode;
            offline). True loads torchvision's ImageNet backbone file through the registry
            (`chunky.weights.fetch`: pinned sha256, ``CHUNKY_WEIGHTS_DIR``, a clear offline error);
            torchvision itself never downloads. LPIPS's linear layers ship with the ``lpips`` package.
    """
    if kind == "none":
        return None
    from chunky.compat import ensure_torchvision

    ensure_torchvision()
    import lpips

    net = kind.removeprefix("lpips-")
    with warnings.catch_warnings():  # lpips calls torchvision with its deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, spatial=True, pnet_rand=True, verbose=False)
    if pretrained_backbone:
        from chunky.weights import fetch

        name = LPIPS_BACKBONES[net]
        load_backbone(model.net, torch.load(fetch(name), map_location="cpu", weights_only=True), name)
    return model.eval().requires_grad_(False)


def load_backbone(backbone: nn.Module, state: dict, name: str) -> None:
    """Load a torchvision VGG16 / AlexNet state dict (``features.<index>.<param>`` keys) into lpips's
    sliced backbone (``slice<n>.<index>.<param>``), strictly: every feature tensor must find its layer."""
    features = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    expected = {key.split(".", 1)[1]: key for key in backbone.state_dict()}  # "0.weight" -> "slice1.0.weight"
    wrong = sorted(set(features) ^ set(expected))
    wrong += [k for k in features if k in expected and features[k].shape != backbone.state_dict()[expected[k]].shape]
    if wrong:
        raise CheckpointError(
            f"{name} is not torchvision's ImageNet backbone for LPIPS (keys or shapes differ: "
            f"{wrong[:4]}); delete it and fetch it again."
        )
    backbone.load_state_dict({expected[k]: v for k, v in features.items()}, strict=True)


def masked_mean(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [K, C, H, W] weighted by ``masks`` [K, 1, H, W] -> [K] (0 for an empty mask)."""
    weight = masks.sum(dim=(1, 2, 3)) * values.shape[1]
    return (values * masks).sum(dim=(1, 2, 3)) / weight.clamp(min=1e-8)


_prepared_copies: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[list[int], nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def prepared_for(perceptual: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """``perceptual``, or a copy whose convolution weights and biases are already as a convolution of ``inputs``
    takes them: in autocast's dtype under autocast on their device, channels-last where ``inputs`` are (not
    contiguous). Kept while ``perceptual``'s parameters are unchanged (their in-place versions).

    A convolution casts a float32 weight on every call under autocast unless the weight requires gradients,
    which a frozen backbone's do not, and converts it to channels-last on every call (forward and backward) for
    channels-last inputs, as the generator's renders are: for LPIPS-VGG that was about 0.1 s of each 8-segment
    step (bf16, 2 Xeon cores). The copy's convolutions get the tensors those casts gave, so the results are the
    same; the rest (the scaling layer's shift and scale) stays float32, as autocast leaves it."""
    device = inputs.device
    autocast = torch.is_autocast_enabled(device.type)
    channels_last = inputs.dim() == 4 and is_channels_last(inputs)
    if not autocast and not channels_last:
        return perceptual
    dtype = torch.get_autocast_dtype(device.type) if autocast else None
    # inference-mode tensors cannot be saved for a later backward pass: they get their own copy
    key = (dtype, device, channels_last, torch.is_inference_mode_enabled())
    versions = [p._version for p in perceptual.parameters()]
    copies = _prepared_copies.setdefault(perceptual, {})
    if key not in copies or copies[key][0] != versions:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        with torch.no_grad():
            module = copy.deepcopy(perceptual)
            for layer in module.modules():
                if isinstance(layer, nn.Conv2d):
                    layer.to(device=device, dtype=dtype or layer.weight.dtype, memory_format=layout)
        copies[key] = (versions, module)
    return copies[key][1]


def lpips_features(perceptual: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The unit-normalised backbone features LPIPS compares, for [N, 3, H, W] images in [-1, 1].

    Computing the target's features once per run (instead of once per step and segment) is what
    `segment_losses` takes ``target_features`` for."""
    module = prepared_for(perceptual, images)
    outputs = module.net(module.scaling_layer(images))
    return [feature / (feature.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for feature in outputs]


def lpips_map(
    perceptual: nn.Module, features: list[torch.Tensor], target_features: list[torch.Tensor], size: tuple[int, int]
) -> torch.Tensor:
    """Spatial LPIPS [N, 1, *size] from two feature lists (as `lpips.LPIPS(spatial=True)` computes it)."""
    total = 0
    lins = prepared_for(perceptual, features[0]).lins
    for lin, a, b in zip(lins, features, target_features):
        total = total + F.interpolate(lin((a - b).square()), size=size, mode="bilinear", align_corners=False)
    return total


def segment_losses(
    renders: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor,
    *,
    perceptual: nn.Module | None,
    pixel_weight: float,
    target_features: list[torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-segment reconstruction losses.

    LPIPS judges each segment in context, as the authors' tool does: the render is pasted into the
    photo outside its mask grown by a 7x7 max filter (``render * m + target * (1 - m)``), so the
    backbone's receptive field around a small segment sees the photo, not unconstrained pixels; the
    distance map is then averaged over the mask.

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
        distance = lpips_map(
            perceptual,
            lpips_features(perceptual, paste_in_context(renders, target, masks)),
            target_features,
            renders.shape[-2:],
        )
        lpips_value = masked_mean(distance.float(), masks)
    return {"lpips": lpips_value, "l2": l2, "total": lpips_value + pixel_weight * l2}


def paste_in_context(renders: torch.Tensor, target: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each render [K, 3, R, R] inside its mask [K, 1, R, R] grown by a 7x7 max filter, the photo
    [1, 3, R, R] outside it: what LPIPS compares with the photo."""
    grown = F.max_pool2d(masks, 2 * CONTEXT_DILATE_PX + 1, stride=1, padding=CONTEXT_DILATE_PX).to(renders.dtype)
    return renders * grown + target.to(renders.dtype) * (1 - grown)


REG_SAMPLES = 10_000  # z samples behind the regulariser's scale (the authors' tool uses 10 000)
_spread_cache: weakref.WeakKeyDictionary[nn.Module, dict[str, float]] = weakref.WeakKeyDictionary()


@torch.no_grad()
def latent_spread(G, space: str) -> float:
    """w_std^2 of the authors' tool for codes in ``space``: the total variance of the generator's codes,
    summed over their dimensions, from seeded samples (computed once per generator and space).

    W: E||w - w_avg||^2 over 512-d w (about 130 for FFHQ). W+: n_latent times that (a W+ code of the
    mapping is its w on every row, so the regulariser of a W+ code is the W one divided by n_latent).
    S: the total variance of all style channels of mapped w."""
    spreads = _spread_cache.setdefault(G, {})
    if space not in spreads:
        z = torch.randn(REG_SAMPLES, G.style_dim, generator=torch.Generator().manual_seed(123)).to(G.w_avg.device)
        w = G.mapping(z).double()
        total = float((w - w.mean(0)).square().sum(1).mean())
        if space == "w+":
            total *= G.n_latent
        elif space == "s":
            styles = torch.cat(G.styles(w[:1000].float()), dim=1).double()
            total = float((styles - styles.mean(0)).square().sum(1).mean())
        spreads[space] = total
    return spreads[space]


def latent_regulariser(
    codes: torch.Tensor | list[torch.Tensor], center: torch.Tensor | list[torch.Tensor], spread: float = 1.0
) -> torch.Tensor:
    """mean(((code - center) / w_std)^2) per segment -> [K], with ``spread`` = w_std^2 (`latent_spread`).

    The mean runs over layers and dimensions: ``codes`` is [K, ..., D] (W or W+) or, in S, a list of
    [K, C_l] (each channel weighs the same). Multiplied by `InversionConfig.reg_weight` (10 in the
    authors' tool), this is their ``mean_latent_loss_weight`` term."""
    if isinstance(codes, torch.Tensor):
        return (codes - center).square().flatten(1).mean(dim=1) / spread
    squares = torch.cat([(c - m).square() for c, m in zip(codes, center)], dim=1)
    return squares.mean(dim=1) / spread
