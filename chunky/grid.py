"""Labelled comparison grids for slides: rows are photos, columns are methods (photo | global W | ...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from chunky.errors import InvalidInputError


def comparison_grid(rows: Sequence[Sequence[np.ndarray | None]], labels: Sequence[str], *, cell: int = 256,
                    gap: int = 8) -> np.ndarray:
    """One image with a header row of ``labels`` and one row per photo.

    Args:
        rows: per photo, one [H, W, 3] uint8 image per label (None leaves the cell blank).
        labels: column titles.
        cell: side of each (square) cell in pixels.
        gap: white space between cells.

    Returns:
        [H, W, 3] uint8 on a white background.
    """
    if not rows or any(len(r) != len(labels) for r in rows):
        raise InvalidInputError(f"Every grid row needs {len(labels)} images, one per label.")
    font = _font(max(12, cell // 14))
    header = max(24, cell // 8)
    width = len(labels) * cell + (len(labels) + 1) * gap
    height = header + len(rows) * (cell + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels):
        x = gap + c * (cell + gap)
        text_width = draw.textlength(label, font=font)
        draw.text((x + (cell - text_width) / 2, (header - font.size) / 2), label, fill="black", font=font)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            if image is None:
                continue
            tile = Image.fromarray(np.asarray(image, np.uint8)).resize((cell, cell), Image.Resampling.LANCZOS)
            canvas.paste(tile, (gap + c * (cell + gap), header + r * (cell + gap)))
    return np.asarray(canvas)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support ignores sizes
        return ImageFont.load_default()
