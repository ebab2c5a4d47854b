"""Tests for worker.realworld.make_sets, the generator of the real-world sets."""

import io

import numpy as np
import pytest
from PIL import Image

from shared.normalize import to_mnist
from worker import realworld


@pytest.fixture(scope="module")
def sets(mnist):
    x, y = mnist
    return realworld.make_sets(x, y, n=20, seed=0)


def test_deterministic(mnist, sets):
    x, y = mnist
    again = realworld.make_sets(x, y, n=20, seed=0)
    assert again == sets
    other = realworld.make_sets(x, y, n=20, seed=1)
    assert other["photo"] != sets["photo"]


def test_formats_and_labels(sets):
    assert set(sets) == {"photo", "canvas", "large", "typed"}
    modes = {k: set() for k in sets}
    for name, items in sets.items():
        assert len(items) == 20
        for data, label in items:
            assert isinstance(data, bytes) and 0 <= label <= 9
            im = Image.open(io.BytesIO(data))
            im.load()
            modes[name].add((im.format, im.mode))
            if name == "canvas":
                assert im.mode == "RGBA" and im.size == (280, 280)
                a = np.asarray(im)[:, :, 3]
                assert a.min() == 0 and a.max() == 255
            if name == "large":
                assert min(im.size) >= 280 and max(im.size) <= 600
    assert {f for f, _ in modes["photo"]} == {"JPEG"}
    assert {m for _, m in modes["photo"]} == {"L", "RGB"}
    assert {m for _, m in modes["large"]} == {"I;16", "P"}
    assert [lab for _, lab in sets["typed"]] == [i % 10 for i in range(20)]


def test_every_image_normalises(sets):
    for items in sets.values():
        for data, _ in items:
            out = to_mnist(Image.open(io.BytesIO(data)))
            assert out.shape == (28, 28) and out.max() == pytest.approx(1.0)


def test_missing_fonts_say_which_packages(mnist, tmp_path, monkeypatch):
    x, y = mnist
    monkeypatch.setattr(realworld, "FONT_DIR", str(tmp_path))
    monkeypatch.setattr(realworld, "_FONT_CACHE", {})
    with pytest.raises(FileNotFoundError, match="fonts-dejavu-core and fonts-dejavu-extra"):
        realworld.make_sets(x, y, n=1, seed=0)
