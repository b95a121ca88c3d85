import io
import zlib

import numpy as np
import pytest
from PIL import Image

from chunky.errors import InvalidInputError
from chunky.images import MAX_PIXELS, read_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (120, 80), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = read_image(encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (120, 80, 3)
    assert decoded[2, -3, 0] > 200 and decoded[2, -3, 1] < 60  # red is now top-right


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("L", (64, 64), 200), (200, 200, 200)),
        (Image.new("I;16", (64, 64), 65535), (255, 255, 255)),
        (Image.new("RGBA", (64, 64), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("RGBA", (64, 64), (10, 20, 30, 255)), (10, 20, 30)),
        (Image.new("P", (64, 64), 0), None),
    ],
)
def test_modes_are_converted_to_rgb(image, expected):
    decoded = read_image(encode(image))
    assert decoded.shape == (64, 64, 3) and decoded.dtype == np.uint8
    if expected is not None:
        assert tuple(decoded[5, 5]) == expected


def test_cmyk_jpeg_is_converted():
    assert read_image(encode(Image.new("CMYK", (64, 64), (0, 0, 0, 0)), "JPEG")).shape == (64, 64, 3)


def test_animated_images_are_refused():
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidInputError, match="animated"):
        read_image(buffer.getvalue())


def test_huge_dimensions_are_refused_before_decoding():
    # a PNG header announcing 20000 x 20000 pixels (400 MP) with almost no data behind it
    data = encode(Image.new("L", (64, 64)))
    header = bytearray(data)
    header[16:24] = (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")  # IHDR's checksum
    with pytest.raises(InvalidInputError, match=f"limit is {MAX_PIXELS / 1e6:.0f} megapixels"):
        read_image(bytes(header))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"GIF89a not really", "not"),
        (b"hello world", "not an image in a known format"),
    ],
)
def test_non_images_are_refused(data, message):
    with pytest.raises(InvalidInputError, match=message):
        read_image(data)


def test_truncated_and_tiny_images_are_refused():
    data = encode(Image.new("RGB", (256, 256), (1, 2, 3)), "JPEG")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        read_image(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="at least 64"):
        read_image(encode(Image.new("RGB", (1, 1))))
