"""Decoding uploads safely.

Two levels, used by the two sides:

* ``inspect_image`` reads only the header (format and size). The API calls it on every
  upload: it is cheap, and it is enough to reject non-images, formats we do not accept
  and decompression bombs before anything is queued.
* ``decode_image`` fully decodes, with the same checks first. The worker calls it.

Nothing here touches the disk: uploads stay in memory.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from shared.errors import (
    CorruptImage,
    EmptyUpload,
    ImageTooLarge,
    NotAnImage,
    UnsupportedImageFormat,
)

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG")
# A file that starts like one of ours but cannot be read is a broken image, not a non-image.
SIGNATURES: tuple[bytes, ...] = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")

__all__ = ["ACCEPTED_FORMATS", "CorruptImage", "ImageInfo", "decode_image", "inspect_image"]


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def _open(data: bytes, formats: tuple[str, ...] | None) -> Image.Image:
    # Our own pixel check (the MAX_IMAGE_PIXELS setting) follows at once, before anything is
    # decoded, and names the image's size; Pillow's guard would pre-empt it with a vaguer
    # error. So it is off while we read a header, and on again for everyone else after.
    # (If two threads overlap here, the guard may catch an image first: the same 413.)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge() from exc
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _identify(data: bytes) -> Image.Image:
    if not data:
        raise EmptyUpload()
    try:
        return _open(data, ACCEPTED_FORMATS)
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        # Pillow raises these for a bad header checksum, a truncated header or an
        # oversized text chunk; with our signature that is a corrupt image, not "not one".
        if data.startswith(SIGNATURES):
            raise CorruptImage() from None
    # Not PNG or JPEG: tell "an image we do not take" (415) from "not an image" (400).
    try:
        other = _open(data, None)
    except ImageTooLarge:
        raise
    except Exception:  # noqa: BLE001 - any plugin may fail in its own way on garbage
        raise NotAnImage() from None
    raise UnsupportedImageFormat(
        f"Image format {other.format or 'unknown'} is not supported; send PNG or JPEG."
    )


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImage("The image has no pixels.")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image has {width}x{height} pixels; at most {max_pixels} are accepted."
        )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_info(data: bytes) -> ImageInfo | None:
    """Size from a PNG's IHDR chunk, read directly (the API's hot path: no Pillow)."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        raise CorruptImage()
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return ImageInfo(format="PNG", width=width, height=height)


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Format and size from the header alone; raises the matching ``ServiceError``."""
    info = _png_info(data)
    if info is not None:
        _check_pixels((info.width, info.height), max_pixels)
        return info
    image = _identify(data)
    _check_pixels(image.size, max_pixels)
    return ImageInfo(format=image.format or "", width=image.width, height=image.height)


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Fully decoded first frame of an accepted image; raises the matching ``ServiceError``."""
    image = _identify(data)
    _check_pixels(image.size, max_pixels)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptImage() from exc
    return image
