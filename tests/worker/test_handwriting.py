"""The handwriting sets MNIST under-represents (``worker/handwriting.py``)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.normalize import to_mnist
from worker import handwriting


@pytest.fixture(scope="module")
def dev() -> dict[str, list[tuple[bytes, int]]]:
    return handwriting.make_sets("dev", n=20)


def test_same_part_same_bytes_and_parts_differ(dev: dict[str, list[tuple[bytes, int]]]) -> None:
    assert handwriting.make_sets("dev", n=20) == dev
    test = handwriting.make_sets("test", n=20)
    for name in handwriting.SET_NAMES:
        assert not {data for data, _ in test[name]} & {data for data, _ in dev[name]}


def test_labels_formats_and_sizes(dev: dict[str, list[tuple[bytes, int]]]) -> None:
    assert tuple(dev) == handwriting.SET_NAMES
    for name in ("styles", "lowres", "fonts"):
        assert [label for _, label in dev[name]] == [i % 10 for i in range(20)]
    uci_labels = [label for _, label in dev["uci"]]
    assert len(uci_labels) == 899 and set(uci_labels) == set(range(10))
    formats = {Image.open(io.BytesIO(data)).format for items in dev.values() for data, _ in items}
    assert formats == {"PNG", "JPEG"}


def test_every_style_of_every_digit_draws_ink() -> None:
    rng = np.random.default_rng(0)
    for digit, styles in handwriting.STYLES.items():
        for _ in range(4 * len(styles)):
            ink = handwriting.draw_digit(digit, rng, 64)
            assert ink.max() > 0.9 and ink.shape[0] >= 64


def test_images_normalise_to_mnist(dev: dict[str, list[tuple[bytes, int]]]) -> None:
    for name in ("styles", "fonts"):
        for data, _ in dev[name]:
            out = to_mnist(Image.open(io.BytesIO(data)))
            assert out.shape == (28, 28) and out.max() == pytest.approx(1.0)


def test_missing_fonts_name_the_packages(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(handwriting, "HANDWRITING_FONTS", (str(tmp_path / "gone.ttf"),))
    with pytest.raises(FileNotFoundError, match="fonts-comic-neue"):
        handwriting.make_sets("dev", n=1)


def test_samples_name_their_sources() -> None:
    samples = handwriting.make_samples("dev", n=20)
    fonts = [handwriting.font_name(path) for path in handwriting.HANDWRITING_FONTS]
    assert {s.source for s in samples["styles"]} == {handwriting.PEN}
    assert [s.source for s in samples["fonts"]] == [fonts[i // 10] for i in range(20)]
    lowres = {s.source for s in samples["lowres"]}
    assert handwriting.PEN in lowres and len(lowres - {handwriting.PEN}) > 1
    assert lowres <= {handwriting.PEN, *fonts}
    assert {s.source for s in samples["uci"]} == {handwriting.UCI}
