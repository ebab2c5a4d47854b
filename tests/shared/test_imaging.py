"""Header inspection and decoding with limits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.errors import EmptyUpload, ImageTooLarge, NotAnImage, UnsupportedImageFormat
from shared.imaging import CorruptImage, decode_image, inspect_image
from tests.images import encode


def test_inspect_reads_the_header_only() -> None:
    info = inspect_image(encode(Image.new("L", (40, 30)), "PNG"), max_pixels=10_000)
    assert (info.format, info.width, info.height) == ("PNG", 40, 30)
    info = inspect_image(encode(Image.new("RGB", (10, 10)), "JPEG"), max_pixels=10_000)
    assert info.format == "JPEG"


def test_errors_are_specific() -> None:
    with pytest.raises(EmptyUpload):
        inspect_image(b"", 100)
    with pytest.raises(NotAnImage):
        inspect_image(b"hello", 100)
    with pytest.raises(UnsupportedImageFormat, match="GIF"):
        inspect_image(encode(Image.new("L", (5, 5)), "GIF"), 100)
    with pytest.raises(ImageTooLarge, match="11x10"):
        inspect_image(encode(Image.new("L", (11, 10)), "PNG"), 100)


def test_truncated_images_are_corrupt() -> None:
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        data = encode(noisy, fmt)
        inspect_image(data[: len(data) // 2], 10_000)  # the header is intact
        with pytest.raises(CorruptImage):
            decode_image(data[: len(data) // 2], 10_000)


def test_decode_gives_pixels() -> None:
    image = decode_image(encode(np.full((8, 8), 77, np.uint8), "PNG"), 100)
    assert np.asarray(image).mean() == 77


def test_a_broken_png_or_jpeg_header_is_corrupt_not_a_non_image() -> None:
    data = encode(Image.new("L", (8, 8)), "PNG")
    broken_crc = data[:29] + bytes(b ^ 0xFF for b in data[29:33]) + data[33:]  # IHDR's CRC
    for broken in (broken_crc, data[:8], b"\xff\xd8\xff\xe0"):
        with pytest.raises(CorruptImage):
            inspect_image(broken, 100)


def test_importing_the_decoder_leaves_pillows_own_guard_on() -> None:
    import warnings

    import shared.imaging  # noqa: F401 - importing it must change no global state

    assert Image.MAX_IMAGE_PIXELS is not None
    assert not any(
        f[2] is Image.DecompressionBombWarning and f[0] == "ignore" for f in warnings.filters
    )


def test_an_image_past_pillows_own_limit_gets_our_answer_and_the_guard_stays_on() -> None:
    before = Image.MAX_IMAGE_PIXELS
    side = int((2 * before) ** 0.5) + 2  # past Pillow's own error threshold
    jpeg = encode(Image.new("L", (64, 64)), "JPEG")
    huge = jpeg.replace(
        b"\xff\xc0\x00\x0b\x08\x00\x40\x00\x40",
        b"\xff\xc0\x00\x0b\x08" + side.to_bytes(2, "big") * 2,
        1,
    )
    assert huge != jpeg
    with pytest.raises(ImageTooLarge, match=f"{side}x{side}"):  # our check, naming the size
        inspect_image(huge, max_pixels=40_000_000)
    assert before == Image.MAX_IMAGE_PIXELS  # and Pillow's guard is back on
