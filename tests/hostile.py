"""A corpus of hostile and odd uploads, each with the answer the service documents for it.

Every case builds one raw HTTP request (body and headers, multipart written by hand so
that file names, boundaries and part headers are exactly what a hostile client would
send) and states the expected status and ``detail`` (exact or a substring) or, for odd
but legitimate images, the digit. ``tests/api/test_hostile.py`` runs the corpus in
process and ``tests/integration/test_hostile_live.py`` against real processes.

Cases are built from one MNIST digit (``Digit``) so that odd encodings of a real digit
can be checked for the right answer, not just for a 200.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

BOUNDARY = "hostile-corpus-7f3a9c"
PREDICT = "/predict/mnist"
TWENTY_MB = 20 * 1024 * 1024

NOT_AN_IMAGE = "File provided is not an image."
EMPTY = "The uploaded file is empty."
CORRUPT = "The image is corrupt or truncated."
NO_DIGIT = "No digit found in the image."
NO_FILE = "The request has no 'file' field: send the image as field 'file'."
NOT_MULTIPART = "Send the image as multipart/form-data in a field named 'file'."
MALFORMED = "The multipart body is malformed."


@dataclass(frozen=True)
class Digit:
    """The MNIST digit the legitimate cases are made of (white on black, 28x28)."""

    pixels: np.ndarray
    label: int

    def upright(self, size: int = 112) -> Image.Image:
        """Dark ink on white paper, enlarged: what a photo or a scan looks like."""
        image = Image.fromarray(255 - self.pixels).resize((size, size), Image.Resampling.BICUBIC)
        return image.convert("L")


@dataclass(frozen=True)
class Request:
    content: bytes
    headers: dict[str, str]
    method: str = "POST"
    path: str = PREDICT

    def as_kwargs(self) -> dict[str, Any]:
        """Arguments for ``httpx.Client.request`` (and FastAPI's ``TestClient``)."""
        return {
            "method": self.method,
            "url": self.path,
            "content": self.content,
            "headers": self.headers,
        }


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Digit], Request]
    status: int
    detail: str | None = None  # the exact detail
    detail_has: str | None = None  # or a part of it
    digit: bool = False  # a 200 that must name the corpus digit
    response_headers: dict[str, str] = field(default_factory=dict)

    def check(self, status: int, body: dict[str, object], digit: Digit) -> list[str]:
        """What is wrong with an answer (empty when it is the documented one)."""
        problems = []
        if status != self.status:
            problems.append(f"status {status}, expected {self.status}")
        if self.detail is not None and body.get("detail") != self.detail:
            problems.append(f"detail {body.get('detail')!r}, expected {self.detail!r}")
        if self.detail_has is not None and self.detail_has not in str(body.get("detail")):
            problems.append(f"detail {body.get('detail')!r} lacks {self.detail_has!r}")
        if self.digit and body.get("prediction") != str(digit.label):
            problems.append(f"prediction {body.get('prediction')!r}, expected {digit.label}")
        return problems


# --- building requests -------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    data: bytes
    name: str = "file"
    filename: bytes | None = b"upload.png"
    content_type: str | None = "image/png"


def multipart(*parts: Part, boundary: str = BOUNDARY) -> bytes:
    out = io.BytesIO()
    for part in parts:
        disposition = b'form-data; name="' + part.name.encode() + b'"'
        if part.filename is not None:
            disposition += b'; filename="' + part.filename + b'"'
        out.write(b"--" + boundary.encode() + b"\r\n")
        out.write(b"Content-Disposition: " + disposition + b"\r\n")
        if part.content_type is not None:
            out.write(b"Content-Type: " + part.content_type.encode() + b"\r\n")
        out.write(b"\r\n" + part.data + b"\r\n")
    out.write(b"--" + boundary.encode() + b"--\r\n")
    return out.getvalue()


def form(*parts: Part, headers: dict[str, str] | None = None, path: str = PREDICT) -> Request:
    base = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return Request(multipart(*parts), base | (headers or {}), path=path)


def upload(data: bytes, **part: object) -> Request:
    return form(Part(data, **part))  # type: ignore[arg-type]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_declaring(width: int, height: int, idat: bytes = b"", bits: int = 8) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (grey) over ``idat``."""
    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def with_broken_crc(data: bytes, chunk: bytes) -> bytes:
    """``data`` (a PNG) with the CRC of its first ``chunk`` chunk flipped."""
    at = data.index(chunk) - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    crc_at = at + 8 + length
    broken = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    return data[:crc_at] + broken + data[crc_at + 4 :]


def noise(size: int = 64) -> Image.Image:
    pixels = np.random.default_rng(7).integers(0, 255, (size, size), dtype=np.uint8)
    return Image.fromarray(pixels)


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("digit.png", b"\x89PNG not really")
    return buffer.getvalue()


def animated_gif(digit: Digit) -> bytes:
    first = digit.upright().convert("P")
    second = first.rotate(30).convert("P")
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def multipage_tiff(digit: Digit) -> bytes:
    page = digit.upright()
    return encode(page, "TIFF", save_all=True, append_images=[page.rotate(90)])


def cmyk_jpeg(digit: Digit) -> bytes:
    return encode(digit.upright().convert("CMYK"), "JPEG", quality=95)


def png16(digit: Digit) -> bytes:
    # 16-bit grey (I;16): full-range values, as a scanner writes them.
    wide = np.asarray(digit.upright(), np.uint16) * 257
    return encode(Image.fromarray(wide), "PNG")


def palette_png(digit: Digit) -> bytes:
    return encode(
        digit.upright().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"
    )


def transparent_png(digit: Digit) -> bytes:
    # Black ink whose alpha is the stroke; the fully transparent rest is black too, so only
    # a decoder that honours alpha can see the digit.
    alpha = Image.fromarray(digit.pixels).resize((112, 112), Image.Resampling.BICUBIC)
    rgba = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
    rgba.putalpha(alpha)
    return encode(rgba, "PNG")


def exif_rotated_jpeg(digit: Digit) -> bytes:
    # Stored turned a quarter to the left; EXIF orientation 6 says "turn right to view".
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = digit.upright().rotate(90, expand=True)
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def plain_png(digit: Digit) -> bytes:
    return encode(digit.upright(), "PNG")


@cache
def bomb(side: int = 30_000) -> bytes:
    """A 1-bit black PNG of ``side`` x ``side`` pixels: about 100 kB that inflate to 112 MB."""
    row = bytes(1 + (side + 7) // 8)  # filter byte, then the packed pixels
    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(row * 1000) for _ in range(side // 1000))
    return png_declaring(side, side, rows + packer.flush(), bits=1)


@cache
def ztxt_bomb() -> bytes:
    # A valid 28x28 PNG carrying a compressed text chunk that inflates to 16 MB.
    base = encode(Image.new("L", (28, 28)), "PNG")
    payload = b"comment\x00\x00" + zlib.compress(bytes(16 * 1024 * 1024), 1)
    at = base.index(b"IDAT") - 4
    return base[:at] + png_chunk(b"zTXt", payload) + base[at:]


def chunked_twenty_mb() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(TWENTY_MB)


# --- the corpus ----------------------------------------------------------------------------

CASES: list[Case] = [
    # Not images at all, whatever the name says.
    Case("empty_file", lambda d: upload(b""), 400, EMPTY),
    Case("zero_byte_named_part", lambda d: upload(b"", filename=b"digit.jpg"), 400, EMPTY),
    Case("text_named_png", lambda d: upload(b"seven, honestly\n"), 400, NOT_AN_IMAGE),
    Case(
        "html_named_png",
        lambda d: upload(b"<!doctype html><html><body><script>alert(1)</script></body></html>"),
        400,
        NOT_AN_IMAGE,
    ),
    Case("json_named_png", lambda d: upload(json.dumps({"digit": 7}).encode()), 400, NOT_AN_IMAGE),
    Case(
        "svg_named_png",
        lambda d: upload(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28">'
            b'<text x="4" y="24">7</text></svg>'
        ),
        400,
        NOT_AN_IMAGE,
    ),
    Case(
        "pdf_named_png",
        lambda d: upload(b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"),
        400,
        NOT_AN_IMAGE,
    ),
    Case("zip_named_png", lambda d: upload(zip_bytes()), 400, NOT_AN_IMAGE),
    Case("null_bytes_named_png", lambda d: upload(bytes(4096)), 400, NOT_AN_IMAGE),
    # PNG or JPEG by their signature, but broken.
    Case("truncated_png", lambda d: upload(truncated(encode(noise(), "PNG"))), 400, CORRUPT),
    Case(
        "truncated_jpeg",
        lambda d: upload(truncated(encode(noise().convert("RGB"), "JPEG")), filename=b"a.jpg"),
        400,
        CORRUPT,
    ),
    Case(
        "png_signature_only",
        lambda d: upload(b"\x89PNG\r\n\x1a\n"),
        400,
        CORRUPT,
    ),
    Case(
        "png_broken_header_crc",
        lambda d: upload(with_broken_crc(plain_png(d), b"IHDR")),
        400,
        CORRUPT,
    ),
    Case(
        # Pillow checks the checksums of header chunks, not of the pixel data; the data
        # here inflates intact, so the digit is read (a damaged stream fails to inflate).
        "png_broken_data_crc",
        lambda d: upload(with_broken_crc(plain_png(d), b"IDAT")),
        200,
        digit=True,
    ),
    Case("png_text_chunk_bomb", lambda d: upload(ztxt_bomb()), 400, CORRUPT),
    Case(
        "png_wide_header_tiny_data",
        lambda d: upload(png_declaring(50_000, 100, zlib.compress(b"\x00" * 10))),
        400,
        CORRUPT,
    ),
    # Too many pixels: refused from the header, before any decoding.
    Case(
        "decompression_bomb_30000_square",
        lambda d: upload(bomb()),
        413,
        detail_has="30000x30000",
    ),
    Case(
        "png_huge_header_no_data",
        lambda d: upload(png_declaring(1_000_000, 1_000_000)),
        413,
        detail_has="1000000x1000000",
    ),
    Case(
        "jpeg_huge_header",
        # A JPEG's SOF0 frame header holds its size: 65000x65000 on a 64x64 body.
        lambda d: upload(
            encode(noise().convert("RGB"), "JPEG").replace(
                b"\xff\xc0\x00\x11\x08\x00\x40\x00\x40",
                b"\xff\xc0\x00\x11\x08\xfd\xe8\xfd\xe8",
                1,
            )
        ),
        413,
        detail_has="65000x65000",
    ),
    # Images of other formats.
    Case("animated_gif", lambda d: upload(animated_gif(d)), 415, detail_has="GIF"),
    Case("multipage_tiff", lambda d: upload(multipage_tiff(d)), 415, detail_has="TIFF"),
    Case("webp", lambda d: upload(encode(d.upright(), "WEBP")), 415, detail_has="WEBP"),
    Case("bmp", lambda d: upload(encode(d.upright(), "BMP")), 415, detail_has="BMP"),
    # Odd shapes: valid images without a digit in them.
    Case("one_by_one", lambda d: upload(encode(Image.new("L", (1, 1), 255), "PNG")), 422, NO_DIGIT),
    Case(
        "ten_thousand_by_one",
        lambda d: upload(encode(Image.new("L", (10_000, 1), 255), "PNG")),
        422,
        NO_DIGIT,
    ),
    Case(
        "one_by_ten_thousand",
        lambda d: upload(encode(Image.new("L", (1, 10_000), 255), "PNG")),
        422,
        NO_DIGIT,
    ),
    Case(
        "one_colour",
        lambda d: upload(encode(Image.new("RGB", (200, 120), (40, 90, 200)), "JPEG")),
        422,
        NO_DIGIT,
    ),
    # Odd but legitimate encodings of a real digit: the digit must come back.
    Case("cmyk_jpeg", lambda d: upload(cmyk_jpeg(d), filename=b"cmyk.jpg"), 200, digit=True),
    Case("png_16_bit", lambda d: upload(png16(d)), 200, digit=True),
    Case("palette_png", lambda d: upload(palette_png(d)), 200, digit=True),
    Case("transparent_png", lambda d: upload(transparent_png(d)), 200, digit=True),
    Case(
        "jpeg_exif_rotation",
        lambda d: upload(exif_rotated_jpeg(d), filename=b"phone.jpg"),
        200,
        digit=True,
    ),
    Case(
        "wrong_content_type",
        lambda d: upload(plain_png(d), content_type="application/x-msdownload"),
        200,
        digit=True,
    ),
    Case("no_content_type", lambda d: upload(plain_png(d), content_type=None), 200, digit=True),
    # Hostile names: never used for anything, so they change nothing.
    Case(
        "path_traversal_name",
        lambda d: upload(plain_png(d), filename=b"../../etc/passwd.png"),
        200,
        digit=True,
    ),
    Case(
        "unicode_name_1000_chars",
        lambda d: upload(plain_png(d), filename=("\u0661\u00e9\U0001f600" * 334)[:1000].encode()),
        200,
        digit=True,
    ),
    Case(
        "null_bytes_in_name",
        lambda d: upload(plain_png(d), filename=b"digit\x00.exe\x00.png"),
        200,
        digit=True,
    ),
    Case(
        "long_request_id",
        lambda d: form(Part(plain_png(d)), headers={"X-Request-ID": "r" * 5000}),
        200,
        digit=True,
    ),
    # Oversized: stopped while streaming.
    Case(
        "twenty_mb_upload",
        lambda d: upload(chunked_twenty_mb()),
        413,
        detail_has="at most",
    ),
    # Malformed requests.
    Case(
        "multipart_without_file",
        lambda d: form(Part(plain_png(d), name="image")),
        422,
        NO_FILE,
    ),
    Case(
        "two_file_parts",
        lambda d: form(Part(plain_png(d)), Part(plain_png(d))),
        422,
        detail_has="exactly one",
    ),
    Case(
        # Not a size limit here but a misuse of the single endpoint: the same 422 as two.
        "three_file_parts",
        lambda d: form(*[Part(plain_png(d))] * 3),
        422,
        detail_has="exactly one",
    ),
    Case(
        "json_body",
        lambda d: Request(b'{"file": "aGVsbG8="}', {"Content-Type": "application/json"}),
        422,
        NOT_MULTIPART,
    ),
    Case(
        "multipart_without_boundary",
        lambda d: Request(multipart(Part(plain_png(d))), {"Content-Type": "multipart/form-data"}),
        422,
        NOT_MULTIPART,
    ),
    Case(
        "bogus_boundary",
        lambda d: Request(
            multipart(Part(plain_png(d)), boundary="the-real-one"),
            {"Content-Type": "multipart/form-data; boundary=another-one"},
        ),
        400,
        MALFORMED,
    ),
    Case(
        "truncated_multipart",
        lambda d: Request(
            multipart(Part(plain_png(d)))[:300],
            {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        ),
        400,
        MALFORMED,
    ),
    Case(
        "no_body",
        lambda d: Request(b"", {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
        400,
        MALFORMED,
    ),
    # Job ids that try to walk out of their path: no route, or no such job.
    Case(
        "job_id_path_traversal",
        lambda d: Request(b"", {}, method="GET", path="/jobs/..%2F..%2Fetc%2Fpasswd"),
        404,
        "Not Found",
    ),
    Case(
        "job_id_dot_dot",
        lambda d: Request(b"", {}, method="GET", path="/jobs/%2E%2E"),
        404,
        "Job not found (never issued, or expired).",
    ),
    Case(
        "job_id_too_long",
        lambda d: Request(b"", {}, method="GET", path="/jobs/" + "a" * 65),
        422,
        detail_has="job_id",
    ),
]

CASE_NAMES = [case.name for case in CASES]
BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"
