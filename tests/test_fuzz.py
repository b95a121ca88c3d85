"""Hostile and broken image files: every one is either read into a valid RGB image within the limits or
refused with an InvalidInputError, quickly, without other exceptions and without runaway memory."""

import io
import random
import resource
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from chunky.errors import InvalidInputError
from chunky.images import MAX_PIXELS, MIN_SIDE, read_image


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def png_with_size(width, height):
    data = bytearray(encode(Image.new("L", (64, 64)), "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def bad_inputs():
    rng = random.Random(0)
    photo = Image.fromarray((np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8))
    samples = {fmt: encode(photo, fmt) for fmt in ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")}
    cases = []
    for fmt, data in samples.items():  # truncated at many points
        for cut in (0, 1, 8, 16, 33, 64, 100, len(data) // 4, len(data) // 2, len(data) - 10, len(data) - 1):
            cases.append((f"{fmt} truncated at {cut}", data[:cut]))
    for fmt, data in samples.items():  # random byte corruption
        for i in range(12):
            corrupt = bytearray(data)
            for _ in range(1 + i):
                corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
            cases.append((f"{fmt} with {1 + i} corrupted bytes", bytes(corrupt)))
    for i in range(20):  # random junk and text
        cases.append((f"random bytes {i}", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))))
    cases += [
        ("text", b"hello, I am a text file renamed .png"),
        ("html", b"<html><body>hi</body></html>"),
        ("zip", b"PK\x03\x04" + b"\x00" * 100),
        ("pdf", b"%PDF-1.4\n%..."),
        ("empty", b""),
    ]
    for w, h in (
        (1, 1),
        (1, 5000),
        (5000, 1),
        (63, 500),
        (64, 20000),
        (20000, 64),
        (12000, 12000),
        (100000, 100000),
        (65535, 65535),
        (8000, 8000),
        (MIN_SIDE, MIN_SIDE),
    ):
        cases.append((f"PNG header {w}x{h}", png_with_size(w, h)))
    for w, h in ((1, 1), (2, 300), (300, 2), (63, 63), (64, 4000)):
        cases.append((f"real {w}x{h}", encode(Image.new("RGB", (w, h), (9, 9, 9)), "PNG")))
    modes = {
        "I;16": 40000,
        "I": 70000,
        "F": 3.5,
        "CMYK": (1, 2, 3, 4),
        "P": 3,
        "LA": (5, 200),
        "RGBA": (1, 2, 3, 0),
        "1": 1,
        "L": 7,
        "YCbCr": (1, 2, 3),
    }
    for mode, colour in modes.items():
        for fmt in ("PNG", "TIFF", "JPEG"):
            try:
                cases.append((f"{mode} as {fmt}", encode(Image.new(mode, (80, 70), colour), fmt)))
            except (OSError, ValueError, KeyError):
                pass  # that format cannot hold that mode
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "WEBP", "PNG"):
        cases.append((f"animated {fmt}", encode(frames[0], fmt, save_all=True, append_images=frames[1:])))
    for fmt, data in samples.items():  # wrong "extension" does not matter: the bytes are what count
        cases.append((f"{fmt} bytes, any name", data))
    return cases


CASES = bad_inputs()


def test_there_are_at_least_200_cases():
    assert len(CASES) >= 200, len(CASES)


@pytest.mark.parametrize("name, data", CASES, ids=[name for name, _ in CASES])
def test_bad_input_is_refused_clearly_or_read_safely(name, data):
    start = time.perf_counter()
    try:
        image = read_image(data, name=name)
    except InvalidInputError as error:
        assert name in str(error) and len(str(error)) < 300
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= MIN_SIDE and image.shape[0] * image.shape[1] <= MAX_PIXELS
    assert time.perf_counter() - start < 5.0


def test_the_whole_batch_stays_within_bounded_memory():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for name, data in CASES:
        try:
            read_image(data, name=name)
        except InvalidInputError:
            pass
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 512, grown_mib
