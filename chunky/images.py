"""Conversions between the internal image convention and everything else, in one place.

Internal: float32 NCHW RGB in [-1, 1]. External: uint8 HWC RGB arrays in [0, 255] and PIL images.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from chunky.errors import InvalidInputError


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
    return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 127.5 - 1


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size] (area averaging; unchanged when already that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="area")


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] float in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(tensor_to_uint8(image))


# ------------------------------------------------------------------------------ reading user files
MAX_FILE_BYTES = 64 << 20  # 64 MiB
MAX_PIXELS = 60_000_000  # e.g. 10000 x 6000; larger is refused before decoding
MIN_SIDE = 64


def read_image(source: str | Path | bytes, *, name: str = "the image", alpha: bool = False) -> np.ndarray:
    """Decode a user's image file into [H, W, 3] uint8 RGB (with ``alpha``: [H, W, 4] RGBA, e.g. a sketch
    layer), whatever its format and mode. Every image that enters chunky comes through here.

    EXIF orientation is applied; greyscale, palette, CMYK, 16-bit and alpha images are converted
    (transparent pixels become white). Refused with `InvalidInputError`: files that are not images,
    truncated or corrupt files, animations, files over ``MAX_FILE_BYTES``, images over ``MAX_PIXELS``
    (checked before decoding, so a decompression bomb costs nothing) or with a side under ``MIN_SIDE``.

    Args:
        source: a path or the file's bytes.
        name: how to call the file in error messages.
    """
    data = source if isinstance(source, bytes) else _read_bytes(Path(source), name)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInputError(f"{name} is {len(data) / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES >> 20} MiB.")
    if not data:
        raise InvalidInputError(f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():  # PIL warns about huge headers; _check_size refuses them below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as image:
            _check_size(image, name)
            if getattr(image, "n_frames", 1) > 1:
                raise InvalidInputError(f"{name} is animated ({image.n_frames} frames); upload a single still image.")
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGBA")) if alpha else _to_rgb(image)
    except InvalidInputError:
        raise
    except Image.DecompressionBombError:
        raise InvalidInputError(
            f"{name} is too large to decode safely; the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(f"{name} is not an image in a known format. Use a PNG, JPEG or WebP file.") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # truncated or corrupt data
        raise InvalidInputError(f"{name} is not a readable image ({error}). Use a PNG, JPEG or WebP file.") from None


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInputError(
                f"{name} is {path.stat().st_size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES >> 20} MiB."
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{name} ({path}) does not exist.") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{name} ({path}) is a folder, not an image file.") from None


def _check_size(image: Image.Image, name: str) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise InvalidInputError(f"{name} is {width}x{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels.")
    if min(width, height) < MIN_SIDE:
        raise InvalidInputError(f"{name} is {width}x{height} pixels; each side must be at least {MIN_SIDE}.")


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: scale to 8 bits
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float64), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def resize_uint8(array: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8 (Lanczos; the aspect ratio is the caller's business)."""
    if array.shape[:2] == (size, size):
        return array
    return np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.LANCZOS))
