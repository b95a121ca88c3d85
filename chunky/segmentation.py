"""Named segments of a face crop: reading them from label maps and mask files, and mask utilities.

A `Segmentation` is K named soft masks [K, 1, H, W] in [0, 1] at the crop's resolution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from chunky.errors import InvalidInputError
from chunky.images import read_image

MAX_SEGMENTS = 32


@dataclass(frozen=True)
class Segmentation:
    """K named soft masks of one image.

    Attributes:
        names: K unique segment names.
        masks: [K, 1, H, W] float32 in [0, 1].
    """

    names: tuple[str, ...]
    masks: torch.Tensor

    def __post_init__(self):
        masks, names = self.masks, tuple(self.names)
        object.__setattr__(self, "names", names)
        if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
            raise InvalidInputError(f"Segmentation masks must be [K, 1, H, W], got {getattr(masks, 'shape', type(masks))}.")
        if len(names) != masks.shape[0] or len(set(names)) != len(names):
            raise InvalidInputError(f"Segmentation needs one unique name per mask: {len(masks)} masks, names {list(names)}.")
        if not 1 <= len(names) <= MAX_SEGMENTS:
            raise InvalidInputError(f"A segmentation has 1 to {MAX_SEGMENTS} segments, got {len(names)}.")

    @property
    def size(self) -> int:
        return self.masks.shape[-1]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise InvalidInputError(f"There is no segment named {name!r}; the segments are {list(self.names)}.")
        return self.names.index(name)

    def resized(self, size: int) -> "Segmentation":
        """The same segments at [size, size] (area-averaged when shrinking, bilinear when growing)."""
        if self.masks.shape[-2:] == (size, size):
            return self
        mode = "area" if size < self.masks.shape[-1] else "bilinear"
        masks = F.interpolate(self.masks, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
        return Segmentation(self.names, masks.clamp(0, 1))

    def label_map(self) -> np.ndarray:
        """[H, W] int: the index of the strongest mask at each pixel."""
        return self.masks[:, 0].argmax(0).cpu().numpy()

    @classmethod
    def from_label_map(cls, labels: np.ndarray, names: Mapping[int, str] | None = None) -> "Segmentation":
        """One hard mask per distinct value of ``labels`` [H, W] (ascending), named by ``names`` or "label_<v>"."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(f"A label map must be an [H, W] integer array, got {labels.dtype} {list(labels.shape)}.")
        values = np.unique(labels)
        if len(values) > MAX_SEGMENTS:
            raise InvalidInputError(f"The label map has {len(values)} distinct labels; at most {MAX_SEGMENTS} segments are allowed.")
        names = names or {}
        masks = torch.from_numpy(np.stack([labels == v for v in values])[:, None].astype(np.float32))
        return cls(tuple(names.get(int(v), f"label_{int(v)}") for v in values), masks)

    @classmethod
    def read(cls, path: str | Path) -> "Segmentation":
        """From a label PNG (one label index per pixel) or a folder of per-segment mask images
        (white = inside; named by file name, in sorted order)."""
        path = Path(path)
        if path.is_dir():
            return cls._read_folder(path)
        return cls.from_label_map(_read_labels(path))

    @classmethod
    def _read_folder(cls, folder: Path) -> "Segmentation":
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
        if not files:
            raise InvalidInputError(f"The mask folder {folder} holds no PNG/JPEG/WebP/BMP files.")
        if len(files) > MAX_SEGMENTS:
            raise InvalidInputError(f"The mask folder {folder} holds {len(files)} masks; at most {MAX_SEGMENTS} are allowed.")
        arrays = [read_image(p, name=f"mask {p.name}").astype(np.float32).mean(axis=2) / 255.0 for p in files]
        if len({a.shape for a in arrays}) != 1:
            raise InvalidInputError(f"The masks in {folder} differ in size: {sorted({a.shape for a in arrays})}.")
        names = tuple(_safe_name(p.stem) for p in files)
        return cls(names, torch.from_numpy(np.stack(arrays)[:, None]))


def _read_labels(path: Path) -> np.ndarray:
    """A label PNG: single-channel ('L', 'P' or 'I') values used as they are, not as colours."""
    from PIL import Image

    if not path.is_file():
        raise InvalidInputError(f"The label map {path} does not exist.")
    read_image(path, name=f"label map {path.name}")  # the same format, size and corruption checks as photos
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise InvalidInputError(
                f"The label map {path.name} is {image.mode}; it must be a single-channel PNG holding one label index "
                "per pixel (or pass a folder of per-segment masks).")
        return np.asarray(image).astype(np.int64)


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:40] or "segment"

