"""Checks of the values a page or an API client sends, each refusal naming the input as the page labels it.

A web page sends what its widgets hold, but an API client can send anything: null, text for a number, a
number for a list. Each `Input` turns one such value into what the handler expects or raises an
`InvalidInputError` that says which input, what was sent and what is expected. Nothing is clamped or
rounded silently. `app.py` declares each handler argument's input as its annotation (``steps: STEPS``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from chunky.config import whole
from chunky.errors import InvalidInputError
from chunky.images import read_image

PNG_DATA_URL = "data:image/png;base64,"
MAX_STROKES_BYTES = 8 << 20  # a 1024 px canvas's PNG is at most about 4 MiB
MAX_STROKES_SIDE = 2048


class Input:
    """One input of a handler; ``label`` is its name on the page."""

    label: str

    def check(self, value):
        raise NotImplementedError

    def refuse(self, value, expected: str):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise InvalidInputError(f"{self.label} must be {expected}, got {shown}.")


@dataclass(frozen=True)
class Whole(Input):
    """A whole number in [low, high] (2.5, text, NaN and None refused; 3.0 is 3)."""

    label: str
    low: int
    high: int

    def check(self, value) -> int:
        if isinstance(value, bool):
            self.refuse(value, f"a whole number from {self.low} to {self.high}")
        return whole(self.label, value, self.low, self.high)


@dataclass(frozen=True)
class Number(Input):
    """A finite number in [low, high]."""

    label: str
    low: float
    high: float

    def check(self, value) -> float:
        number = _number(value)
        if number is None or not self.low <= number <= self.high:
            self.refuse(value, f"a number from {self.low:g} to {self.high:g}")
        return number


@dataclass(frozen=True)
class Choice(Input):
    """One of ``options`` (text)."""

    label: str
    options: tuple[str, ...]

    def check(self, value) -> str:
        if not isinstance(value, str) or value not in self.options:
            self.refuse(value, "one of " + ", ".join(self.options))
        return value


@dataclass(frozen=True)
class Text(Input):
    """Text (a segment's name, a file's path); None is allowed when ``optional`` (and stays None)."""

    label: str
    optional: bool = False

    def check(self, value) -> str | None:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            self.refuse(value, "text" + (" or empty" if self.optional else ""))
        return value


@dataclass(frozen=True)
class Names(Input):
    """A list of texts (segment names); None is the empty list."""

    label: str

    def check(self, value) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            self.refuse(value, "a list of segment names")
        return list(value)


@dataclass(frozen=True)
class SketchStrokes(Input):
    """The sketch canvas's value: "" or None (nothing painted), or a PNG data URL ("data:image/png;base64,...")
    -> a list of [H, W, 4] uint8 RGBA layers (none, or one), read by `chunky.images.read_image`. The canvas is
    the crop's size (at most 1024 px), so the text is refused unread over ``MAX_STROKES_BYTES`` once decoded
    and the picture from its header over ``MAX_STROKES_SIDE`` px."""

    label: str

    def check(self, value) -> list[np.ndarray]:
        if value is None or value == "":
            return []
        if not isinstance(value, str) or not value.startswith(PNG_DATA_URL):
            self.refuse(value, 'the canvas\'s strokes, "" or a PNG data URL ("data:image/png;base64,...")')
        if len(value) > len(PNG_DATA_URL) + MAX_STROKES_BYTES * 4 // 3 + 4:
            raise InvalidInputError(f"{self.label}: the strokes are over {MAX_STROKES_BYTES >> 20} MiB.")
        try:
            data = base64.b64decode(value[len(PNG_DATA_URL) :], validate=True)
        except ValueError:  # binascii.Error for bad base64, ValueError for text that is not ASCII
            self.refuse(value, "a PNG data URL with valid base64")
        name = f"{self.label} (the strokes)"
        width = height = 0
        unreadable = (OSError, ValueError, Image.DecompressionBombError)  # the reader refuses them, with its message
        with contextlib.suppress(*unreadable), Image.open(io.BytesIO(data)) as header:  # the size, not the pixels
            width, height = header.size
        if max(width, height) > MAX_STROKES_SIDE:
            raise InvalidInputError(f"{name}: {width}x{height} px is larger than any canvas.")
        return [read_image(data, name=name, alpha=True)]


@dataclass(frozen=True)
class Points(Input):
    """Five (x, y) points as text "x1,y1,...,x5,y5" (photo pixels) -> [5, 2] floats."""

    label: str

    def check(self, value) -> np.ndarray:
        numbers = [_number(part) for part in value.split(",")] if isinstance(value, str) and value.strip() else []
        if len(numbers) != 10 or any(n is None for n in numbers):
            self.refuse(value, "five points x1,y1,...,x5,y5 in photo pixels")
        return np.array(numbers, dtype=np.float64).reshape(5, 2)


@dataclass(frozen=True)
class Flag(Input):
    """True or false; None is false."""

    label: str

    def check(self, value) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.refuse(value, "true or false")
        return value


def slider_values(names: Sequence[str], values: Sequence, limits: Sequence[tuple[float, float]]) -> dict[str, float]:
    """The sliders' values by direction name (None is 0); a value that is not a finite number within its slider's
    ``limits`` (low, high) is refused."""
    strengths = {}
    for name, value, (low, high) in zip(names, values, limits):
        Number(f"The slider {name!r}", low, high).check(0.0 if value is None else value)
        strengths[name] = 0.0 if value is None else float(value)
    return strengths


def _number(value) -> float | None:
    """``value`` as a finite float (numbers and numeric text), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
