"""The typeface digits training adds: which fonts, how they are drawn, and their checksum."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from shared import typefaces
from shared.errors import DatasetError
from worker import handwriting


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    return typefaces.usable_fonts()


def test_no_typeface_is_a_font_of_the_evaluation_sets() -> None:
    # The handwriting sets must stay apart from training: no shared package, folder or file.
    evaluation_packages = set(handwriting.FONT_PACKAGES.split())
    assert not evaluation_packages & set(typefaces.PACKAGES)
    evaluation_files = {Path(path).resolve() for path in handwriting.HANDWRITING_FONTS}
    assert not evaluation_files & {path.resolve() for path in typefaces.font_files()}


def test_fonts_that_draw_no_digits_are_left_out(fonts: list[Path]) -> None:
    every = typefaces.font_files()
    assert 190 <= len(fonts) < len(every)
    names = {path.name for path in fonts}
    assert "D050000L.otf" not in names  # dingbats: its 0-9 are pencils and ticks
    assert "setofont-ex.ttf" not in names  # draws no digits at all
    assert "Balker.ttf" not in names  # one placeholder box for every digit
    assert {"LiberationSans-Regular.ttf", "Purisa-Bold.ttf", "Dustismo.ttf"} <= names


def test_renders_are_mnist_like_digits_and_repeat_with_the_seed(fonts: list[Path]) -> None:
    some = fonts[::40]
    images, labels = typefaces.render(some, 2, seed=0)
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    assert len(images) == len(labels) >= 0.9 * 2 * 10 * len(some)
    assert set(labels.tolist()) == set(range(10))
    # white digits on black, in MNIST's 20-pixel box: the border is dark
    assert images[:, :2, :].max() == 0 and images[:, :, :2].max() == 0
    assert (images.reshape(len(images), -1).max(1) == 255).all()
    again, again_labels = typefaces.render(some, 2, seed=0)
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    other, _ = typefaces.render(some, 2, seed=1)
    assert not np.array_equal(images[: len(other)], other[: len(images)])


def test_nothing_to_render() -> None:
    images, labels = typefaces.render([], 30, seed=0)
    assert images.shape == (0, 28, 28) and labels.shape == (0,)


def test_a_missing_package_stops_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(typefaces.PACKAGES, "fonts-lato", str(tmp_path / "absent"))
    with pytest.raises(
        DatasetError, match=r"fonts-lato.*apt-get install .*TRAIN_TYPEFACE_RENDERS=0"
    ):
        typefaces.font_files()


def test_the_checksum_follows_the_font_files(fonts: list[Path], tmp_path: Path) -> None:
    copies = []
    for path in fonts[:3]:
        copies.append(tmp_path / path.name)
        shutil.copy(path, copies[-1])
    before = typefaces.checksum(copies)
    assert before == typefaces.checksum(fonts[:3])
    copies[1].write_bytes(copies[1].read_bytes() + b"\0")
    assert typefaces.checksum(copies) != before


def test_an_outlined_glyph_is_a_ring_around_the_stroke(fonts: list[Path]) -> None:
    font = next(path for path in fonts if path.name == "LiberationSans-Bold.ttf")
    filled = typefaces.glyph("1", font, 100, 0.0)
    outlined = typefaces.glyph("1", font, 100, 0.0, outline=4)

    def background_regions(ink: np.ndarray) -> int:
        return int(ndimage.label(np.pad(ink, 1) < 0.5)[1])

    assert background_regions(filled) == 1
    assert background_regions(outlined) == 2  # the outside, and the stroke's hollow inside
