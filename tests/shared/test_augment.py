"""Training-data augmentation (``shared/augment.py``)."""

from __future__ import annotations

import numpy as np

from shared import augment, optdigits


def test_same_seed_same_images_and_labels_follow(mnist) -> None:
    images, labels = mnist
    images, labels = images[:300], labels[:300]
    pixels, kept_labels = augment.augment(images, labels, seed=3)
    again, again_labels = augment.augment(images, labels, seed=3)
    other, _ = augment.augment(images, labels, seed=4)
    assert np.array_equal(pixels, again) and np.array_equal(kept_labels, again_labels)
    assert not np.array_equal(pixels[:50], other[:50])
    assert pixels.shape == (len(kept_labels), 784) and pixels.dtype == np.float32
    assert len(kept_labels) >= 0.95 * len(labels)
    assert np.bincount(kept_labels, minlength=10).min() > 0


def test_new_versions_look_like_mnist_and_differ_from_the_originals(mnist) -> None:
    images, labels = mnist
    pixels, _ = augment.augment(images[:200], labels[:200], seed=0)
    digits = pixels.reshape(-1, 28, 28)
    assert np.allclose(digits.max(axis=(1, 2)), 1.0)
    grid = np.arange(28)
    mass = digits.sum(axis=(1, 2))
    rows = (digits.sum(axis=2) @ grid) / mass
    cols = (digits.sum(axis=1) @ grid) / mass
    assert np.abs(rows - 14).max() < 1.5 and np.abs(cols - 14).max() < 1.5
    changed = np.abs(digits[:50] - images[:50] / 255.0).mean(axis=(1, 2))
    assert (changed > 0.01).all()


def test_chunks_do_not_depend_on_the_number_of_cores(mnist, monkeypatch) -> None:
    images, labels = mnist
    monkeypatch.setattr(augment, "CHUNK", 64)
    many, _ = augment.augment(images[:200], labels[:200], seed=1)
    monkeypatch.setattr(augment.os, "cpu_count", lambda: 1)
    one, _ = augment.augment(images[:200], labels[:200], seed=1)
    assert np.array_equal(many, one)


def test_scans_are_enlarged_into_uploads_each_copy_its_own(optdigits_dir) -> None:
    scans, labels = optdigits.load_training_scans(optdigits_dir, optdigits_dir)
    scans, labels = scans[:100], labels[:100]
    pixels, kept_labels = augment.enlarge_scans(scans, labels, copies=2, seed=0)
    again, _ = augment.enlarge_scans(scans, labels, copies=2, seed=0)
    assert np.array_equal(pixels, again)
    assert pixels.shape == (200, 784)  # every 8x8 scan stays a digit
    assert np.array_equal(kept_labels, np.tile(labels, 2))
    digits = pixels.reshape(-1, 28, 28)
    assert np.allclose(digits.max(axis=(1, 2)), 1.0)  # normalised as uploads are
    # the two copies of a scan were enlarged differently
    assert np.abs(digits[:50] - digits[100:150]).mean(axis=(1, 2)).min() > 0.001
    assert augment.enlarge_scans(scans, labels, copies=0, seed=0)[0].shape == (0, 784)


def test_scans_do_not_depend_on_the_number_of_cores(optdigits_dir, monkeypatch) -> None:
    scans, labels = optdigits.load_training_scans(optdigits_dir, optdigits_dir)
    monkeypatch.setattr(augment, "CHUNK", 64)
    many, _ = augment.enlarge_scans(scans[:200], labels[:200], copies=1, seed=1)
    monkeypatch.setattr(augment.os, "cpu_count", lambda: 1)
    one, _ = augment.enlarge_scans(scans[:200], labels[:200], copies=1, seed=1)
    assert np.array_equal(many, one)
