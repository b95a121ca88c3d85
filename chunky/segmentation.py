"""Named segments of a face crop: reading them from label maps and mask files, and mask utilities.

A `Segmentation` is K named soft masks [K, 1, H, W] in [0, 1] at the crop's resolution.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from chunky.errors import InvalidInputError
from chunky.images import read_image

MAX_SEGMENTS = 32

# The 19 labels of CelebAMask-HQ, in the order face parsers (BiSeNet, ParseNet) output them.
CELEBAMASK_LABELS = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)

# Named segments as groups of labels: every label belongs to exactly one group. Edit this table (or pass
# your own) to merge or split segments.
FACE_GROUPS: dict[str, tuple[int, ...]] = {
    "skin": (1,),
    "brows": (2, 3),
    "eyes": (4, 5),
    "nose": (10,),
    "mouth": (11, 12, 13),
    "hair": (17,),
    "ears": (7, 8),
    "neck": (14,),
    "accessories": (6, 9, 15, 18),  # glasses, earrings, necklace, hat
    "clothes": (16,),
    "background": (0,),
}
MIN_SEGMENT_FRACTION = 0.002  # segments smaller than this share of the crop join their largest neighbour


class FaceParser(Protocol):
    def parse(self, crop: np.ndarray) -> np.ndarray:
        """[S, S] int CelebAMask-HQ labels (0..18) of an aligned [S, S, 3] uint8 crop."""


@dataclass(frozen=True)
class Segmentation:
    """K named soft masks of one image.

    Attributes:
        names: K unique segment names.
        masks: [K, 1, H, W] float32 in [0, 1].
        labels: [H, W] the parser's label map the segments came from (for `split`), if any.
    """

    names: tuple[str, ...]
    masks: torch.Tensor
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        masks, names = self.masks, tuple(self.names)
        object.__setattr__(self, "names", names)
        if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
            raise InvalidInputError(
                f"Segmentation masks must be [K, 1, H, W], got {getattr(masks, 'shape', type(masks))}."
            )
        if len(names) != masks.shape[0] or len(set(names)) != len(names):
            raise InvalidInputError(
                f"Segmentation needs one unique name per mask: {len(masks)} masks, names {list(names)}."
            )
        if not 1 <= len(names) <= MAX_SEGMENTS:
            raise InvalidInputError(f"A segmentation has 1 to {MAX_SEGMENTS} segments, got {len(names)}.")

    @property
    def size(self) -> int:
        return self.masks.shape[-1]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise InvalidInputError(f"There is no segment named {name!r}; the segments are {list(self.names)}.")
        return self.names.index(name)

    def resized(self, size: int) -> Segmentation:
        """The same segments at [size, size] (area-averaged when shrinking, bilinear when growing; the label
        map by nearest neighbour)."""
        if self.masks.shape[-2:] == (size, size):
            return self
        mode = "area" if size < self.masks.shape[-1] else "bilinear"
        masks = F.interpolate(
            self.masks, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False})
        )
        labels = None
        if self.labels is not None:  # nearest neighbour: label values are names, not intensities
            rows = (np.arange(size) + 0.5) * self.labels.shape[0] / size
            cols = (np.arange(size) + 0.5) * self.labels.shape[1] / size
            labels = self.labels[rows.astype(int)[:, None], cols.astype(int)[None, :]]
        return Segmentation(self.names, masks.clamp(0, 1), labels)

    def label_map(self) -> np.ndarray:
        """[H, W] int: the index of the strongest mask at each pixel."""
        return self.masks[:, 0].argmax(0).cpu().numpy()

    @classmethod
    def from_label_map(cls, labels: np.ndarray, names: Mapping[int, str] | None = None) -> Segmentation:
        """One hard mask per distinct value of ``labels`` [H, W] (ascending), named by ``names`` or "label_<v>"."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise InvalidInputError(
                f"A label map must be an [H, W] integer array, got {labels.dtype} {list(labels.shape)}."
            )
        values = np.unique(labels)
        if len(values) > MAX_SEGMENTS:
            raise InvalidInputError(
                f"The label map has {len(values)} distinct labels; at most {MAX_SEGMENTS} segments are allowed."
            )
        names = names or {}
        masks = torch.from_numpy(np.stack([labels == v for v in values])[:, None].astype(np.float32))
        return cls(tuple(names.get(int(v), f"label_{int(v)}") for v in values), masks)

    @classmethod
    def from_parsing(
        cls,
        labels: np.ndarray,
        groups: Mapping[str, Sequence[int]] = FACE_GROUPS,
        *,
        min_fraction: float = MIN_SEGMENT_FRACTION,
    ) -> Segmentation:
        """Named segments from a face parser's label map [H, W] (CelebAMask-HQ labels).

        Groups absent from the image are dropped; a segment covering less than ``min_fraction`` of
        the image is merged into the neighbour it shares the longest border with (a tiny segment
        would cost a whole generator pass per step)."""
        labels = np.asarray(labels)
        seen = [label for members in groups.values() for label in members]
        if len(seen) != len(set(seen)):
            raise InvalidInputError("Each label may belong to one group only.")
        unknown = sorted(set(np.unique(labels).tolist()) - set(seen))
        if unknown:
            raise InvalidInputError(f"Labels {unknown} belong to no group; add them to a group.")
        names, masks = [], []
        for name, members in groups.items():
            mask = np.isin(labels, members)
            if mask.any():
                names.append(name)
                masks.append(mask)
        segmentation = cls(tuple(names), torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)), labels)
        return segmentation.merge_small(min_fraction)

    def split(self, name: str) -> Segmentation:
        """Segment ``name`` split into one segment per parser label it holds ("mouth" -> "mouth:u_lip",
        "mouth:l_lip", ...); pixels painted in later (no label of their own) join the largest part."""
        if self.labels is None or self.labels.shape != tuple(self.masks.shape[-2:]):
            raise InvalidInputError("Only segments from face parsing, at the parsing's size, can be split by label.")
        k = self.index(name)
        mask = self.masks[k, 0]
        values = [int(v) for v in np.unique(self.labels[mask.cpu().numpy() > 0.5])]
        if len(values) < 2:
            raise InvalidInputError(f"Segment {name!r} holds a single parser label; there is nothing to split.")
        labels = torch.from_numpy(self.labels).to(mask.device)
        parts = [mask * (labels == v) for v in values]
        largest = max(range(len(parts)), key=lambda i: float(parts[i].sum()))
        parts[largest] = parts[largest] + (mask - sum(parts)).clamp(min=0)
        part_names = tuple(f"{name}:{CELEBAMASK_LABELS[v] if v < len(CELEBAMASK_LABELS) else v}" for v in values)
        masks = torch.cat([self.masks[:k], torch.stack(parts)[:, None], self.masks[k + 1 :]])
        return replace(self, names=self.names[:k] + part_names + self.names[k + 1 :], masks=masks)

    def area(self) -> torch.Tensor:
        """[K] share of the image each segment covers, in [0, 1]."""
        return self.masks.mean(dim=(1, 2, 3))

    def merge(self, names: Sequence[str], new_name: str | None = None) -> Segmentation:
        """One segment (the union, named ``new_name`` or the first name) in place of ``names``."""
        indices = [self.index(n) for n in names]
        if not indices:
            return self
        union = self.masks[indices].amax(dim=0, keepdim=True)
        keep = [k for k in range(len(self.names)) if k not in indices]
        first = min(indices)
        order = sorted(keep + [first])
        new_names = [new_name or self.names[first] if k == first else self.names[k] for k in order]
        new_masks = torch.cat([union if k == first else self.masks[k : k + 1] for k in order])
        return replace(self, names=tuple(new_names), masks=new_masks)

    def merge_small(self, min_fraction: float) -> Segmentation:
        """Merge every segment under ``min_fraction`` of the image into its longest-bordering neighbour."""
        current = self
        while len(current.names) > 1:
            areas = current.area()
            smallest = int(areas.argmin())
            if areas[smallest] >= min_fraction:
                break
            neighbour = current._longest_border(smallest)
            merged = current.merge([current.names[neighbour], current.names[smallest]])
            current = merged
        return current

    def _longest_border(self, index: int) -> int:
        grown = dilate_masks(self.masks[index : index + 1], 1)
        shared = (grown * self.masks).sum(dim=(1, 2, 3))
        shared[index] = -1
        if shared.max() <= 0:  # touches nothing: join the largest segment
            shared = self.area().clone()
            shared[index] = -1
        return int(shared.argmax())

    def with_mask(self, name: str, mask: torch.Tensor) -> Segmentation:
        """A copy where segment ``name`` is ``mask`` [H, W] (added as a new segment when the name is new)."""
        mask = mask.float().clamp(0, 1).reshape(1, 1, *self.masks.shape[-2:])
        if name in self.names:
            masks = self.masks.clone()
            masks[self.index(name)] = mask[0]
            return replace(self, masks=masks)
        return replace(self, names=self.names + (name,), masks=torch.cat([self.masks, mask]))

    def without(self, name: str) -> Segmentation:
        k = self.index(name)
        return replace(
            self, names=self.names[:k] + self.names[k + 1 :], masks=torch.cat([self.masks[:k], self.masks[k + 1 :]])
        )

    def apply_sketch(self, name: str, layer: np.ndarray) -> Segmentation:
        """Add a browser sketch to segment ``name``.

        Args:
            layer: [H, W, 4] uint8 RGBA at the segmentation's size (the page's sketch canvas strokes). Its opaque
                pixels (alpha > 127) join ``name`` and leave every other segment; transparent pixels
                change nothing.
        """
        painted = _painted(layer, self.masks.shape[-1])
        masks = self.masks.clone()
        masks[:, 0, painted] = 0
        masks[self.index(name), 0, painted] = 1
        return replace(self, masks=masks)

    def erase_sketch(self, name: str, layer: np.ndarray) -> Segmentation:
        """Remove the opaque pixels of an RGBA ``layer`` [H, W, 4] from segment ``name`` only (pixels no
        segment covers then come straight from the photo)."""
        painted = _painted(layer, self.masks.shape[-1])
        masks = self.masks.clone()
        masks[self.index(name), 0, painted] = 0
        return replace(self, masks=masks)

    def dilated(self, name: str, pixels: int) -> Segmentation:
        """Grow (``pixels`` > 0) or shrink (< 0) one segment by a square window."""
        k = self.index(name)
        mask = self.masks[k : k + 1]
        changed = dilate_masks(mask, pixels) if pixels >= 0 else 1 - dilate_masks(1 - mask, -pixels)
        return self.with_mask(name, changed[0, 0])

    def overlay(self, image: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """[H, W, 3] uint8 image with each segment tinted by its `segment_colour` (for display)."""
        seg = self.resized(image.shape[0]) if image.shape[0] != self.size else self
        labels = seg.label_map()
        covered = seg.masks[:, 0].amax(0).cpu().numpy() > 0
        palette = np.array([segment_colour(n) for n in seg.names], np.float32)
        tinted = image.astype(np.float32) * (1 - alpha) + palette[labels] * alpha
        return np.where(covered[..., None], tinted, image).round().astype(np.uint8)

    def boundaries(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 ``image`` with a 1-pixel line in each segment's `segment_colour` where the segment
        meets another (for sketching corrections on the photo itself)."""
        seg = self.resized(image.shape[0]) if image.shape[0] != self.size else self
        labels = seg.label_map()
        edge = np.zeros(labels.shape, bool)
        edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        edge[1:, :] |= labels[1:, :] != labels[:-1, :]
        palette = np.array([segment_colour(n) for n in seg.names], np.uint8)
        return np.where(edge[..., None], palette[labels], image)

    def to_label_png(self, path: str | Path) -> None:
        """Save as a single-channel PNG of segment indices (order = ``names``)."""
        from PIL import Image

        Image.fromarray(self.label_map().astype(np.uint8)).save(path)

    @classmethod
    def read(cls, path: str | Path) -> Segmentation:
        """From a label PNG (one label index per pixel) or a folder of per-segment mask images
        (white = inside; named by file name, in sorted order)."""
        path = Path(path)
        if path.is_dir():
            return cls._read_folder(path)
        return cls.from_label_map(_read_labels(path))

    @classmethod
    def _read_folder(cls, folder: Path) -> Segmentation:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
        if not files:
            raise InvalidInputError(f"The mask folder {folder} holds no PNG/JPEG/WebP/BMP files.")
        if len(files) > MAX_SEGMENTS:
            raise InvalidInputError(
                f"The mask folder {folder} holds {len(files)} masks; at most {MAX_SEGMENTS} are allowed."
            )
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
                "per pixel (or pass a folder of per-segment masks)."
            )
        return np.asarray(image).astype(np.int64)


class LayoutParser:
    """A built-in stand-in parser for the test mode: the label map of an average FFHQ-aligned face
    (ellipses where FFHQ puts hair, skin, eyes, brows, nose, lips and neck), whatever the crop shows."""

    def parse(self, crop: np.ndarray) -> np.ndarray:
        size = crop.shape[0]
        y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
        labels = np.zeros((size, size), np.int64)

        def ellipse(cx, cy, rx, ry):
            return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1

        labels[(y > 0.78) & (np.abs(x - 0.5) < 0.12)] = 14  # neck
        labels[ellipse(0.5, 0.42, 0.34, 0.34)] = 17  # hair
        labels[ellipse(0.5, 0.56, 0.25, 0.3)] = 1  # skin
        for cx, eye, brow in ((0.375, 4, 2), (0.625, 5, 3)):
            labels[ellipse(cx, 0.42, 0.07, 0.02)] = brow
            labels[ellipse(cx, 0.475, 0.055, 0.025)] = eye
        labels[ellipse(0.5, 0.6, 0.04, 0.07)] = 10  # nose
        labels[ellipse(0.5, 0.71, 0.1, 0.025)] = 12  # upper lip
        labels[ellipse(0.5, 0.745, 0.09, 0.025)] = 13  # lower lip
        return labels


def dilate_masks(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow [K, 1, H, W] masks by ``radius`` pixels (max filter, square window)."""
    if radius <= 0:
        return masks
    return F.max_pool2d(masks, kernel_size=2 * radius + 1, stride=1, padding=radius)


_COLOURS = {
    "skin": (255, 204, 153),
    "brows": (102, 51, 0),
    "eyes": (0, 153, 255),
    "nose": (255, 102, 102),
    "mouth": (204, 0, 51),
    "hair": (153, 102, 51),
    "ears": (255, 153, 204),
    "neck": (204, 153, 102),
    "accessories": (153, 0, 204),
    "clothes": (51, 153, 51),
    "background": (128, 128, 128),
}


def segment_colour(name: str) -> tuple[int, int, int]:
    """A fixed display colour per segment name (known names get meaningful ones, others a stable hash)."""
    if name in _COLOURS:
        return _COLOURS[name]
    digest = sum((i + 1) * ord(c) for i, c in enumerate(name))
    return (digest * 67 % 256, digest * 131 % 256, digest * 199 % 256)


def _painted(layer: np.ndarray, size: int) -> torch.Tensor:
    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[2] != 4:
        raise InvalidInputError(f"A sketch layer must be an [H, W, 4] RGBA image, got {list(layer.shape)}.")
    if layer.shape[:2] != (size, size):
        raise InvalidInputError(
            f"The sketch layer is {layer.shape[1]}x{layer.shape[0]} but the segments are {size}x{size}."
        )
    return torch.from_numpy(layer[..., 3] > 127)


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:40] or "segment"
