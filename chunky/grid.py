"""Labelled comparison grids for slides: rows are photos, columns are methods (photo | global W | ...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from chunky.errors import InvalidInputError

CAPTION_LINES = 3
HEADER_LINES = 4  # a column title with its metrics wraps onto at most this many lines


def comparison_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    labels: Sequence[str],
    *,
    cell: int = 256,
    gap: int = 8,
    captions: Sequence[Sequence[str]] | None = None,
) -> np.ndarray:
    """One image with a header row of ``labels`` and one row per photo.

    Args:
        rows: per photo, one [H, W, 3] uint8 image per label (None leaves the cell blank).
        labels: column titles (wrapped to the cell's width, at most ``HEADER_LINES`` lines: titles never run
            into each other).
        cell: side of each (square) cell in pixels.
        gap: white space between cells.
        captions: per photo, one text per label, written under its cell (wrapped to the cell's width, at most
            ``CAPTION_LINES`` lines; the rest is cut with "...").

    Returns:
        [H, W, 3] uint8 on a white background.
    """
    if not rows or any(len(r) != len(labels) for r in rows):
        raise InvalidInputError(f"Every grid row needs {len(labels)} images, one per label.")
    font = _font(max(12, cell // 14))
    small = _font(max(10, cell // 20))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    titles = [_wrapped(measure, label, font, cell, HEADER_LINES) for label in labels]  # never wider than a cell
    line_height = font.size + 2
    header = max(24, cell // 8, max(len(lines) for lines in titles) * line_height + 6)
    below = 0 if captions is None else CAPTION_LINES * (small.size + 2) + 4  # caption strip under each row
    width = len(labels) * cell + (len(labels) + 1) * gap
    height = header + len(rows) * (cell + below + gap) + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lines in enumerate(titles):
        x = gap + c * (cell + gap)
        top = (header - len(lines) * line_height) / 2
        for k, line in enumerate(lines):
            text_width = draw.textlength(line, font=font)
            draw.text((x + (cell - text_width) / 2, top + k * line_height), line, fill="black", font=font)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            if image is None:
                continue
            tile = Image.fromarray(np.asarray(image, np.uint8)).resize((cell, cell), Image.Resampling.LANCZOS)
            canvas.paste(tile, (gap + c * (cell + gap), header + r * (cell + below + gap)))
        for c, text in enumerate(captions[r] if captions is not None else ()):
            top = header + r * (cell + below + gap) + cell + 2
            for k, line in enumerate(_wrapped(draw, text, small, cell)):
                draw.text((gap + c * (cell + gap), top + k * (small.size + 2)), line, fill="black", font=small)
    return np.asarray(canvas)


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: int, max_lines: int = CAPTION_LINES) -> list[str]:
    """``text`` in lines that fit ``width`` px, at most ``max_lines`` (the last cut with "..."); a word wider
    than ``width`` is cut to fit."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(lines[-1] + " " + word, font=font) <= width:
            lines[-1] += " " + word
        else:
            while len(word) > 1 and draw.textlength(word, font=font) > width:
                word = word[:-1]
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        while len(lines[-1]) > 1 and draw.textlength(lines[-1] + " ...", font=font) > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += " ..."
    return lines


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType support ignores sizes
        return ImageFont.load_default()


def as_slide(image: np.ndarray, aspect: float = 16 / 9) -> np.ndarray:
    """``image`` ([H, W, 3] uint8) centred on a white canvas of the ``aspect`` (width / height) that just holds
    it: a grid that drops onto a slide without stretching."""
    height, width = image.shape[:2]
    out_width, out_height = max(width, round(height * aspect)), max(height, round(width / aspect))
    canvas = np.full((out_height, out_width, 3), 255, np.uint8)
    top, left = (out_height - height) // 2, (out_width - width) // 2
    canvas[top : top + height, left : left + width] = image
    return canvas
