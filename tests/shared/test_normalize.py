"""Tests for normalize.to_mnist.  Run: PYTHONPATH=/work/main pytest -q test_normalize.py"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from shared.errors import NoDigitFound
from shared.normalize import (
    INK_GAMMA,
    Normalised,
    _fast_path,
    _with_faint_strokes,
    normalise,
    normalise_many,
    to_mnist,
)

# --------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(mnist):
    """Ten test digits, one per class (first occurrence)."""
    x, y = mnist
    return [x[int(np.flatnonzero(y == d)[0])] for d in range(10)]


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def roundtrip(img: Image.Image, fmt: str = "PNG", **kw) -> Image.Image:
    return decode(encode(img, fmt, **kw))


def upscaled(d28: np.ndarray, height: int) -> np.ndarray:
    """Coverage in [0, 1] of an MNIST digit cropped to its box and upscaled to height."""
    a = d28.astype(np.float32) / 255
    r = np.flatnonzero(a.max(1) > 0)
    c = np.flatnonzero(a.max(0) > 0)
    a = a[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
    s = height / a.shape[0]
    size = (max(1, round(a.shape[1] * s)), height)
    up = np.asarray(Image.fromarray(a, "F").resize(size, Image.Resampling.BICUBIC))
    return np.clip(up, 0, 1).astype(np.float32)


def frame(cov: np.ndarray, hw: tuple[int, int], yx: tuple[int, int]) -> np.ndarray:
    out = np.zeros(hw, np.float32)
    y, x = yx
    out[y : y + cov.shape[0], x : x + cov.shape[1]] = cov
    return out


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def assert_mnist_like(out: np.ndarray):
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    idx = np.arange(28)
    total = out.sum()
    cy, cx = out.sum(1) @ idx / total, out.sum(0) @ idx / total
    assert abs(cy - 14) <= 0.75 and abs(cx - 14) <= 0.75, (cy, cx)
    on = out > 0.3
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert 18 <= side <= 21, side
    # MNIST's background is black: most of the field is empty
    assert np.mean(out < 0.05) > 0.6


def assert_is_digit(out: np.ndarray, digits: list[np.ndarray], k: int):
    """The output matches digit k far better than the other nine reference digits."""
    assert_mnist_like(out)
    scores = [corr(out, d) for d in digits]
    assert int(np.argmax(scores)) == k, scores
    assert scores[k] > 0.7, scores[k]


# --------------------------------------------------------------------------------------
# already MNIST-like input
# --------------------------------------------------------------------------------------


def test_mnist_test_images_unchanged(mnist):
    x, _ = mnist
    diffs = []
    for a in x[:500]:
        out = to_mnist(roundtrip(Image.fromarray(a, "L")))
        assert out.shape == (28, 28) and out.dtype == np.float32
        diffs.append(np.abs(out - a / 255.0).mean())
    diffs = np.array(diffs)
    assert diffs.mean() < 1e-3
    assert np.mean(diffs < 5e-3) >= 0.99


def test_mnist_images_take_the_fast_path(mnist):
    # The worker's hot path: most MNIST digits must skip the general pipeline, and what
    # the fast path returns is exactly the pixels scaled by their peak.
    x, _ = mnist
    taken = 0
    for a in x[:500]:
        out = _fast_path(Image.fromarray(a, "L"))
        if out is not None:
            taken += 1
            np.testing.assert_array_equal(out, a.astype(np.float32) * np.float32(1 / a.max()))
    assert taken >= 400, taken
    # ... and images that are not MNIST-like do not take it
    assert _fast_path(Image.fromarray(255 - x[0], "L")) is None
    assert _fast_path(Image.fromarray(np.roll(x[0], 5, axis=1), "L")) is None


def _rule(a: np.ndarray) -> np.ndarray | None:
    """The fast path's rule, written out plainly for one image: what the batched checks
    must decide, and the pixels they must give."""
    peak = int(a.max())
    if peak < 64:
        return None

    def longer_side(level: float) -> int:
        rows, cols = np.flatnonzero(a.max(1) > level), np.flatnonzero(a.max(0) > level)
        return int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1

    if longer_side(0.35 * peak) not in (19, 20) or longer_side(0.02 * peak) > 21:
        return None
    ink = a.astype(np.int64)
    centre = np.array([ink.sum(1) @ np.arange(28), ink.sum(0) @ np.arange(28)]) / ink.sum()
    if np.abs(centre - 14).max() > 0.75:
        return None
    return a.astype(np.float32) * np.float32(1 / peak)


def _bar(height: int = 20, top: int | None = None, value: int = 255) -> np.ndarray:
    """A bar 8 pixels wide, centred unless ``top`` says otherwise."""
    a = np.zeros((28, 28), np.uint8)
    top = round(14 - (height - 1) / 2) if top is None else top
    a[top : top + height, 10:18] = value
    return a


def _with_rows(a: np.ndarray, value: int, rows: tuple[int, ...]) -> np.ndarray:
    a = a.copy()
    a[list(rows), 10:18] = value
    return a


def _with_edges(a: np.ndarray, value: int, rows_too: bool = False) -> np.ndarray:
    """``a`` with its first and last columns (and rows) at ``value``."""
    a = a.copy()
    a[:, [0, 27]] = value
    if rows_too:
        a[[0, 27], :] = value
    return a


# Images at each of the rule's edges, and whether the fast path takes them.
_EDGES = {
    "box 18 high": (_bar(18), False),
    "box 19 high": (_bar(19), True),
    "box 20 high": (_bar(20), True),
    "box 21 high": (_bar(21), False),
    "peak 63": (_bar(value=63), False),
    "peak 64": (_bar(value=64), True),
    "a faint row above and below": (_with_rows(_bar(), 30, (3, 24)), False),
    "a faint row above": (_with_rows(_bar(), 30, (3,)), True),
    "rows too faint to count": (_with_rows(_bar(), 5, (3, 24)), True),
    "a half-strength row above": (_with_rows(_bar(), 100, (3,)), False),
    "a grey border": (_with_edges(_bar(), 9, rows_too=True), False),
    "grey edges left and right": (_with_edges(_bar(), 20), False),
    "centre a pixel up": (_bar(top=3), False),
    "centre a pixel down": (_bar(top=5), True),
}


@pytest.mark.parametrize("name", _EDGES)
def test_the_fast_path_keeps_to_its_rule_at_its_edges(name):
    image, taken = _EDGES[name]
    assert (_rule(image) is not None) == taken  # the cases are what they say
    [got] = normalise_many([Image.fromarray(image, "L")])
    assert isinstance(got, Normalised) and got.mnist_format == taken


def test_the_fast_path_keeps_to_its_rule_on_mnist(mnist):
    # MNIST's digits, and the same moved a pixel, dimmed toward the peak the rule asks for
    # or given a speck: each batch of 64 decided and scaled as the rule says, image by image.
    x, _ = mnist
    rng = np.random.default_rng(0)
    variants = [np.roll(x[:1000], 1, axis=1), np.roll(x[1000:2000], -1, axis=2)]
    variants.append((x[2000:3000] * rng.uniform(0.2, 0.3, (1000, 1, 1))).astype(np.uint8))
    specked = x[3000:4000].copy()
    specked[np.arange(1000), rng.integers(0, 28, 1000), rng.integers(0, 28, 1000)] = 40
    images = np.concatenate([x, *variants, specked])
    taken = 0
    for start in range(0, len(images), 64):
        chunk = images[start : start + 64]
        results = normalise_many(Image.fromarray(a, "L") for a in chunk)
        for a, got in zip(chunk, results, strict=True):
            want = _rule(a)
            assert isinstance(got, Normalised) and got.mnist_format == (want is not None)
            if want is not None:
                np.testing.assert_array_equal(got.pixels, want)
                taken += 1
    assert 0.6 * len(images) < taken < 0.95 * len(images), taken  # both ways, many times


def _mixed_batch(x: np.ndarray) -> list[Image.Image]:
    """MNIST digits with, among them, images the fast path turns away and ones without a
    digit: everything a worker's batch may hold."""
    speck = x[3].copy()
    speck[1, 1] = 200  # ink far outside the box: the general path
    lit = np.stack([x[5]] * 3 + [np.full((28, 28), 255, np.uint8)], -1)
    others = [
        Image.fromarray(255 - x[0], "L"),  # dark on light
        Image.fromarray(np.roll(x[1], 4, axis=1), "L"),  # off centre
        Image.fromarray(np.stack([x[2]] * 3, -1), "RGB"),
        Image.fromarray(speck, "L"),
        Image.fromarray(lit, "RGBA"),  # 28x28 but with an alpha channel
        Image.fromarray(np.zeros((28, 28), np.uint8), "L"),  # blank: no digit
        Image.new("L", (300, 200), 128),  # uniform: no digit
        Image.fromarray(
            np.round(250 - 220 * frame(upscaled(x[6], 120), (300, 260), (90, 70))).astype(np.uint8)
        ),
    ]
    batch = [Image.fromarray(a, "L") for a in x[:40]]
    for i, image in enumerate(others):
        batch.insert(5 * i + 2, image)
    return batch


def test_a_batch_is_normalised_as_its_images_are_one_at_a_time(mnist):
    x, _ = mnist
    batch = _mixed_batch(x)
    results = normalise_many(batch)
    assert len(results) == len(batch)
    routes = {"fast": 0, "general": 0, "none": 0}
    for image, result in zip(batch, results, strict=True):
        try:
            alone: Normalised | NoDigitFound = normalise(image)
        except NoDigitFound as exc:
            alone = exc
        if isinstance(alone, NoDigitFound):
            assert isinstance(result, NoDigitFound) and result.reason == alone.reason
            routes["none"] += 1
            continue
        assert isinstance(result, Normalised)
        assert result.mnist_format == alone.mnist_format
        np.testing.assert_array_equal(result.pixels, alone.pixels)
        routes["fast" if alone.mnist_format else "general"] += 1
    assert routes["fast"] >= 30 and routes["general"] == 6 and routes["none"] == 2, routes
    # the batch's order does not change an image's result
    again = normalise_many(batch[::-1])[::-1]
    for first, second in zip(results, again, strict=True):
        if isinstance(first, Normalised):
            assert isinstance(second, Normalised)
            np.testing.assert_array_equal(first.pixels, second.pixels)


def test_a_batch_of_photos_is_never_in_memory_all_at_once(digits):
    # The worker hands the normaliser a generator that decodes uploads as it is asked:
    # each photo, with or without a digit, turned by its EXIF tag or not, must be let go
    # before the next one is decoded.
    pages = [
        np.round(250 - 220 * frame(upscaled(digits[k], 300), (900, 700), (200, 150))).astype(
            np.uint8
        )
        for k in range(4)
    ]
    pages += [np.full((900, 700), 200, np.uint8)] * 2  # no digit: an error in its place
    turned = Image.Exif()
    turned[0x0112] = 6  # shown turned a quarter: the normaliser works on a turned copy
    alive: list[weakref.ref[Image.Image]] = []

    def photos() -> Iterator[Image.Image]:
        for k, page in enumerate(pages):
            assert [ref() for ref in alive] == [None] * len(alive), f"before photo {k}"
            image = Image.fromarray(page)
            if k % 2:
                image.info["exif"] = turned.tobytes()
            alive.append(weakref.ref(image))
            yield image
            del image

    gc.disable()  # freed by their last reference going, not by a collection
    try:
        results = normalise_many(photos())
        assert [ref() for ref in alive] == [None] * len(pages)
    finally:
        gc.enable()
    assert [isinstance(r, Normalised) for r in results] == [True] * 4 + [False] * 2


def test_shifted_mnist_digit_is_recentred(digits):
    d = digits[3]
    shifted = np.zeros_like(d)
    shifted[:-4, 3:] = d[4:, :-3]  # move up 4 px, right 3 px (the digit stays inside)
    out = to_mnist(Image.fromarray(shifted, "L"))
    # the general path also lifts grey ink (its step 6), which the fast path leaves alone
    assert np.abs(out - (d / 255.0) ** INK_GAMMA).mean() < 1e-3
    # ... and with no lift (a model from before it), the digit exactly as MNIST has it
    unlifted = to_mnist(Image.fromarray(shifted, "L"), ink_gamma=1.0)
    assert np.abs(unlifted - d / 255.0).mean() < 1e-3


def test_inverted_28x28_digit(digits):
    d = digits[7]
    out = to_mnist(Image.fromarray(255 - d, "L"))
    assert np.abs(out - (d / 255.0) ** INK_GAMMA).mean() < 1e-3  # general path: lifted


# --------------------------------------------------------------------------------------
# polarity, paper, colour, JPEG
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 2, 5, 8])
def test_dark_ink_on_light_paper(digits, k):
    cov = frame(upscaled(digits[k], 90), (200, 240), (40, 110))
    img = Image.fromarray(np.round(255 * (1 - cov)).astype(np.uint8), "L")
    out = to_mnist(img)
    assert_is_digit(out, digits, k)
    # same digit light-on-dark gives (nearly) the same result
    out2 = to_mnist(Image.fromarray(np.round(255 * cov).astype(np.uint8), "L"))
    assert np.abs(out - out2).mean() < 0.01


@pytest.mark.parametrize("k", [1, 4, 6, 9])
def test_tinted_noisy_blurred_paper_jpeg(digits, k):
    rng = np.random.default_rng(k)
    cov = frame(upscaled(digits[k], 100), (300, 320), (170, 30))[:, :, None]
    paper, ink = np.array([225, 205, 160]), np.array([30, 40, 90])
    img = paper * (1 - cov) + ink * cov + rng.normal(0, 10, size=(*cov.shape[:2], 3))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    pil = pil.filter(ImageFilter.GaussianBlur(1.0))
    out = to_mnist(roundtrip(pil, "JPEG", quality=60))
    assert_is_digit(out, digits, k)


def test_heavy_jpeg_artefacts(digits):
    cov = frame(upscaled(digits[2], 60), (150, 150), (45, 50))
    pil = Image.fromarray(np.round(255 * (1 - cov)).astype(np.uint8), "L")
    out = to_mnist(roundtrip(pil, "JPEG", quality=15))
    assert_is_digit(out, digits, 2)


def test_colour_ink_with_little_luminance_contrast(digits):
    # red ink on a grey-green paper of similar luminance: a plain grey conversion loses it
    cov = frame(upscaled(digits[5], 80), (160, 160), (40, 50))[:, :, None]
    paper, ink = np.array([90, 140, 110]), np.array([220, 40, 40])

    def lum(c: np.ndarray) -> float:
        return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]

    assert abs(lum(paper) - lum(ink)) < 40
    img = (paper * (1 - cov) + ink * cov).astype(np.uint8)
    out = to_mnist(Image.fromarray(img, "RGB"))
    assert_is_digit(out, digits, 5)


def test_uneven_lighting(digits):
    cov = frame(upscaled(digits[8], 90), (240, 240), (70, 20))
    ramp = np.linspace(0.8, 1.0, 240)[None, :]
    img = (235 * (1 - cov) + 30 * cov) * ramp
    out = to_mnist(Image.fromarray(img.astype(np.uint8), "L"))
    assert_is_digit(out, digits, 8)


@pytest.mark.parametrize("size", [250, 600])
def test_specks_do_not_blow_up_the_box(digits, size):
    c = size // 2
    cov = frame(upscaled(digits[0], 100), (size, size), (c - 50, c - 40))
    clean = to_mnist(Image.fromarray(np.round(255 * (1 - cov)).astype(np.uint8), "L"))
    dirty = 1 - cov
    spots = [(10, 12), (size - 20, 20), (15, size - 30), (size - 25, size - 20)]
    spots += [(c - 100, c), (c + 10, c + 110), (c + 95, c - 5)]  # 50-60 px from the digit
    for y, x in spots:
        dirty[y : y + 4, x : x + 4] = 0.0  # dust
    out = to_mnist(Image.fromarray(np.round(255 * dirty).astype(np.uint8), "L"))
    assert np.abs(out - clean).mean() < 0.01


# --------------------------------------------------------------------------------------
# transparency and palettes
# --------------------------------------------------------------------------------------


def _canvas_rgba(cov: np.ndarray, stroke, under: np.ndarray | None) -> Image.Image:
    h, w = cov.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    if under is not None:
        rgba[:, :, :3] = under
    alpha = np.round(cov * 255).astype(np.uint8)
    rgba[alpha > 0, :3] = stroke
    rgba[:, :, 3] = alpha
    return Image.fromarray(rgba, "RGBA")


@pytest.mark.parametrize("stroke", [(0, 0, 0), (255, 255, 255), (30, 90, 200)])
def test_canvas_rgba_ignores_rgb_under_transparent_pixels(digits, stroke):
    rng = np.random.default_rng(1)
    cov = frame(upscaled(digits[4], 200), (280, 280), (40, 60))
    garbage = rng.integers(0, 256, size=(280, 280, 3), dtype=np.uint8)
    zero = to_mnist(roundtrip(_canvas_rgba(cov, stroke, None)))
    junk = to_mnist(roundtrip(_canvas_rgba(cov, stroke, garbage)))
    assert np.array_equal(zero, junk)
    assert_is_digit(zero, digits, 4)


def test_la_png(digits):
    cov = frame(upscaled(digits[6], 150), (200, 200), (20, 40))
    la = np.zeros((200, 200, 2), np.uint8)
    la[:, :, 0] = np.random.default_rng(2).integers(0, 256, size=(200, 200))
    la[cov > 0, 0] = 0
    la[:, :, 1] = np.round(cov * 255).astype(np.uint8)
    img = roundtrip(Image.fromarray(la, "LA"))
    assert img.mode == "LA"
    assert_is_digit(to_mnist(img), digits, 6)


def test_palette_with_transparent_index(digits):
    # index 0 = transparent *black*, index 1 = opaque black: a naive convert("L") is all black
    cov = frame(upscaled(digits[3], 120), (180, 180), (30, 50)) > 0.5
    p = Image.fromarray(cov.astype(np.uint8), "L").convert("P")
    p.putpalette([0, 0, 0, 0, 0, 0] + [0] * (256 * 3 - 6))
    p.info["transparency"] = 0
    img = roundtrip(p, transparency=0)
    assert img.mode == "P" and "transparency" in img.info
    assert_is_digit(to_mnist(img), digits, 3)


def test_palette_png(digits):
    cov = frame(upscaled(digits[9], 100), (220, 260), (100, 10))
    rgb = np.stack([200 - 170 * cov, 210 - 170 * cov, 180 - 150 * cov], -1).astype(np.uint8)
    pal = Image.fromarray(rgb, "RGB").quantize(colors=16)
    img = roundtrip(pal)
    assert img.mode == "P"
    assert_is_digit(to_mnist(img), digits, 9)


def test_fully_transparent_image_has_no_digit():
    rgba = np.random.default_rng(0).integers(0, 256, size=(100, 100, 4), dtype=np.uint8)
    rgba[:, :, 3] = 0
    with pytest.raises(NoDigitFound):
        to_mnist(Image.fromarray(rgba, "RGBA"))


# --------------------------------------------------------------------------------------
# 16-bit and other modes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("top", [65535, 4095])
def test_16bit_png_is_scaled_not_clipped(digits, top):
    cov = frame(upscaled(digits[2], 110), (300, 280), (20, 150))
    arr = np.round((0.9 - 0.8 * cov) * top).astype(np.uint16)  # dark ink, light paper
    img = roundtrip(Image.fromarray(arr))
    assert img.mode.startswith("I")  # I;16 (or I on some Pillow versions)
    out = to_mnist(img)
    assert_is_digit(out, digits, 2)
    ref = to_mnist(Image.fromarray(np.round((0.9 - 0.8 * cov) * 255).astype(np.uint8), "L"))
    assert np.abs(out - ref).mean() < 0.01


def test_mode_I_and_F(digits):
    cov = frame(upscaled(digits[1], 80), (120, 120), (20, 30))
    i32 = Image.fromarray((cov * 60000).astype(np.int32))
    assert i32.mode == "I"
    assert_is_digit(to_mnist(i32), digits, 1)
    f32 = Image.fromarray(cov.astype(np.float32))
    assert f32.mode == "F"
    assert_is_digit(to_mnist(f32), digits, 1)


def test_exif_orientation_jpeg(digits):
    cov = frame(upscaled(digits[7], 100), (200, 260), (50, 40))
    upright = Image.fromarray(np.round(255 * (1 - cov)).astype(np.uint8), "L")
    ref = to_mnist(roundtrip(upright, "JPEG", quality=95))
    # a camera stores the sensor image rotated and says "rotate 90 CW to view" (6)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = roundtrip(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert img.getexif().get(0x0112) == 6
    out = to_mnist(img)
    assert np.abs(out - ref).mean() < 0.01
    assert_is_digit(out, digits, 7)
    # ... and the same pixels without the tag give a different (rotated) result
    untagged = roundtrip(stored, "JPEG", quality=95)
    assert np.abs(to_mnist(untagged) - ref).mean() > 0.05


# --------------------------------------------------------------------------------------
# big images
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("yx", [(30, 40), (1850, 1880), (900, 1200), (1800, 20)])
def test_big_image_small_digit_anywhere(digits, yx):
    cov = frame(upscaled(digits[6], 110), (2000, 2000), yx)
    img = Image.fromarray(np.round(250 - 220 * cov).astype(np.uint8), "L").convert("RGB")
    assert_is_digit(to_mnist(img), digits, 6)


# --------------------------------------------------------------------------------------
# no digit
# --------------------------------------------------------------------------------------


def _noise(seed, sigma, base=128, shape=(200, 200)):
    rng = np.random.default_rng(seed)
    return np.clip(base + rng.normal(0, sigma, size=shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "img",
    [
        Image.new("L", (28, 28), 0),
        Image.new("L", (300, 200), 255),
        Image.new("RGB", (640, 480), (200, 180, 150)),
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        Image.new("RGBA", (280, 280), (10, 200, 30, 255)),
        Image.new("I;16", (100, 100), 40000),
        Image.new("L", (1, 1), 7),
        Image.new("P", (50, 50), 3),
        Image.fromarray(_noise(0, 3)),  # low-amplitude noise
        Image.fromarray(_noise(1, 5, base=230, shape=(600, 600))),
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200), dtype=np.uint8)),
    ],
    ids=[
        "black28",
        "white",
        "rgb-uniform",
        "transparent",
        "opaque-uniform-rgba",
        "16bit-uniform",
        "1x1",
        "palette-uniform",
        "noise3",
        "noise5-big",
        "uniform-random",
    ],
)
def test_no_digit(img):
    with pytest.raises(NoDigitFound):
        to_mnist(img)


def test_noisy_but_real_digit_is_found(digits):
    # same noise level as the no-digit case above, plus a faint-ish digit: must be found
    cov = frame(upscaled(digits[0], 90), (200, 200), (50, 60))
    img = np.clip(_noise(0, 3).astype(np.float32) - 60 * cov, 0, 255).astype(np.uint8)
    assert_is_digit(to_mnist(Image.fromarray(img)), digits, 0)


def test_hairlines_hold_a_digit_together():
    # An oval like a calligraphic 0: two short thick down-strokes, joined only by a faint
    # hairline, and farther apart than the reach that gathers separate pieces.
    img = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(img)
    oval = (60, 30, 140, 170)
    draw.arc(oval, 0, 360, fill=200, width=2)
    draw.arc(oval, 150, 210, fill=0, width=14)
    draw.arc(oval, 330, 30, fill=0, width=14)
    out = to_mnist(img)
    # both down-strokes are kept, well apart on either side of the centre; alone, one of
    # them would be a 1 centred in the field
    left, right = out[:, :11].max(), out[:, 17:].max()
    assert left > 0.5 and right > 0.5, (left, right)
    rows = np.flatnonzero(out.max(1) > 0.05)
    assert rows[-1] - rows[0] + 1 >= 19  # and the digit keeps its full height in the field


@pytest.mark.parametrize("page", [200, 800])  # 800: the digit is re-read at full size
def test_a_faint_stroke_reaching_far_beyond_the_strong_ink_stays_in_the_box(page):
    # A solid down-stroke with a grey loop, as a thin pen's strokes come out when scanned at
    # low resolution: the loop is faint ink, not strong, and reaches far to the left.
    ink = np.zeros((page, page), np.float32)
    ink[30:170, 125:140] = 1.0
    ink[30:40, 50:140] = ink[90:100, 50:140] = ink[30:100, 50:60] = 0.25
    out = to_mnist(Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)))
    cols = np.flatnonzero(out.max(0) > 0.1)
    assert cols[-1] - cols[0] + 1 >= 10, cols  # the loop, not the down-stroke alone
    assert float(out[:, : cols[0] + 3].max()) > 0.25  # its left side, lifted


def test_a_very_faint_loop_a_little_beyond_the_strong_ink_stays_in_the_box():
    # The scanned 9s of the lowres set that read as 1 or 3: the loop at an eighth of the
    # down-stroke's strength, reaching a sixth of the digit's height to its left.
    ink = np.zeros((200, 200), np.float32)
    ink[30:170, 125:140] = 1.0
    ink[30:36, 101:140] = ink[94:100, 101:140] = ink[30:100, 101:107] = 0.12
    out = to_mnist(Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)))
    cols = np.flatnonzero(out.max(0) > 0.05)
    assert cols[-1] - cols[0] + 1 >= 6, cols  # the loop, not the down-stroke alone


def test_a_faint_ruled_line_through_the_digit_leaves_its_box_alone():
    # A 1 written on a faint ruled line that runs off both sides of the page: it is faint
    # ink touching the digit, but no stroke of it.
    ink = np.zeros((200, 200), np.float32)
    ink[30:170, 94:106] = 1.0
    ink[160:166, :] = 0.25
    out = to_mnist(Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)))
    rows, cols = np.flatnonzero(out.max(1) > 0.1), np.flatnonzero(out.max(0) > 0.1)
    assert rows[-1] - rows[0] + 1 >= 19
    assert cols[-1] - cols[0] + 1 <= 6, cols


def test_faint_ink_near_the_strong_ink_leaves_its_box_alone():
    # A halo or a hairline's tip: faint ink a little beyond the strong ink's box (here 10
    # of a 100-pixel digit on every side) does not widen it; a stroke far beyond one side
    # widens that side only.
    region = np.zeros((200, 200), bool)
    region[40:160, 40:160] = True
    box = (50, 50, 150, 150)
    assert _with_faint_strokes(region, box) == box
    region[60:70, 5:40] = True
    assert _with_faint_strokes(region, box) == (50, 5, 150, 150)
    region[60:70, 0:5] = True  # now it runs off the image: a line, not a stroke
    assert _with_faint_strokes(region, box) == box


@pytest.mark.parametrize("grey", [0.45, 0.7])
def test_grey_strokes_are_lifted_toward_solid(grey):
    # A 7 on white paper: a solid down-stroke and a grey bar (strong enough to count as a
    # stroke), both wide enough to keep a core at their own level through resampling.
    ink = np.zeros((200, 200), np.float32)
    ink[30:70, 40:160] = grey
    ink[30:170, 120:160] = 1.0
    out = to_mnist(Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)))
    bar = float(out[:, 6:10].max())  # left of the down-stroke: the bar alone
    assert bar == pytest.approx(grey**INK_GAMMA, abs=0.02)
    assert bar > grey + 0.05  # lifted, not merely stretched
    assert out.max() == 1.0 and out.min() == 0.0  # solid ink and bare paper stay put
    assert out.dtype == np.float32
    # a model trained before the lift reads the bar as grey as it is
    unlifted = to_mnist(Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)), 1.0)
    assert float(unlifted[:, 6:10].max()) == pytest.approx(grey, abs=0.02)


def test_rejects_non_images():
    with pytest.raises(TypeError):
        to_mnist(np.zeros((28, 28)))  # type: ignore[arg-type]
