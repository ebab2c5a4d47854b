"""Model training, saving, verification and loading."""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import shutil
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from PIL import Image

from shared import inference, mnist, optdigits, typefaces
from shared import model as model_store
from shared.errors import ModelUnavailable
from shared.inference import predict_files
from shared.model import ModelIntegrityError, expected_calibration_error, fit_temperature, softmax
from shared.normalize import INK_GAMMA, to_mnist
from shared.schemas import Prediction
from shared.settings import Settings
from shared.versions import ensure_served


@pytest.fixture
def model_copy(small_model_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "m.joblib"
    shutil.copy(small_model_path, target)
    shutil.copy(model_store.metadata_path(small_model_path), model_store.metadata_path(target))
    return target


def test_saved_model_loads_with_its_metadata(small_model_path: Path, mnist) -> None:
    loaded = model_store.load(small_model_path)
    meta = loaded.metadata
    assert meta["sha256"] == model_store.file_sha256(small_model_path)
    assert meta["pipeline"].endswith("SGDClassifier")
    assert meta["test_accuracy"] > 0.85  # a small model: 6,000 training images
    assert 0 <= meta["test_ece"] < 0.1
    assert set(meta["data_sha256"]) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }
    images, labels = mnist
    answers = loaded.predict(images[:200].reshape(200, -1).astype(np.float32) / 255)
    accuracy = np.mean(
        [a["prediction"] == str(y) for a, y in zip(answers, labels[:200], strict=True)]
    )
    assert accuracy > 0.85
    assert all(
        len(a["top3"]) == 3 and a["top3"][0]["probability"] >= a["top3"][1]["probability"]
        for a in answers
    )
    assert all(Prediction.model_validate(a) for a in answers)  # the schema both sides share


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
def test_a_model_reads_uploads_with_the_lift_it_was_trained_with(
    small_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, traced: bool
) -> None:
    # Training keeps the normaliser's lift of grey ink in the model file; a file saved
    # before the lift existed has none, and predict_files must then leave grey ink as is,
    # on both of its paths (a traced task prepares each image inside spans of its own).
    trained = model_store.load(small_model_path)
    assert trained.ink_gamma == INK_GAMMA == trained.metadata["ink_gamma"]
    older_path = tmp_path / "older.joblib"
    artifact = joblib.load(small_model_path)
    del artifact["ink_gamma"]
    model_store.save(replace(trained, metadata=dict(trained.metadata)), older_path)
    joblib.dump(artifact, older_path)  # the file as a model from before the lift
    meta = json.loads(model_store.metadata_path(older_path).read_text())
    meta["sha256"] = model_store.file_sha256(older_path)
    model_store.metadata_path(older_path).write_text(json.dumps(meta))
    older = model_store.load(older_path)
    assert older.ink_gamma == 1.0

    ink = np.zeros((120, 120), np.float32)
    ink[20:44, 20:100] = 0.5  # a grey bar ...
    ink[20:100, 76:100] = 1.0  # ... on a solid down-stroke
    upload = io.BytesIO()
    Image.fromarray(np.round(255 - 255 * ink).astype(np.uint8)).save(upload, "PNG")
    image = Image.open(io.BytesIO(upload.getvalue()))
    traced_calls: list[tuple[Any, ...]] = []
    prepare_traced = inference._prepare_traced

    def spy(*args: Any) -> np.ndarray:
        traced_calls.append(args)
        return prepare_traced(*args)

    monkeypatch.setattr(inference, "_prepare_traced", spy)
    tracer = TracerProvider().get_tracer("test")
    seen = {}
    for model, gamma in ((trained, INK_GAMMA), (older, 1.0)):
        with tracer.start_as_current_span("task") if traced else contextlib.nullcontext():
            [item] = predict_files([upload.getvalue()], model, 10**6, frozenset({0}))
        url = item["prediction"]["input_image"].split(",", 1)[1]
        seen[gamma] = np.asarray(Image.open(io.BytesIO(base64.b64decode(url))), np.float32) / 255
        assert np.abs(seen[gamma] - to_mnist(image, gamma)).max() <= 1 / 255 + 1e-6  # PNG
    assert np.abs(seen[INK_GAMMA] - seen[1.0]).max() > 0.05  # the two really differ
    assert len(traced_calls) == (2 if traced else 0)  # the path named is the path taken


def test_a_batch_gets_the_same_answers_traced_and_untraced(small_model_path: Path, mnist) -> None:
    # Traced, each upload is decoded and normalised alone, in spans of its own; untraced,
    # the normaliser takes the batch at once. The answers, errors included, must not differ.
    model = model_store.load(small_model_path)
    images, _ = mnist
    blank = _png(np.zeros((28, 28), np.uint8))  # no digit
    files = [_png(image) for image in images[:20]] + [_png(255 - images[20]), blank, b"text"]
    files.insert(3, files.pop())  # an error among the digits
    untraced = predict_files(files, model, 10**6, frozenset({0, 21}))
    with TracerProvider().get_tracer("test").start_as_current_span("task"):
        traced = predict_files(files, model, 10**6, frozenset({0, 21}))
    assert traced == untraced
    errors = [item["error"]["code"] for item in untraced if item["error"] is not None]
    assert errors == ["not_an_image", "no_digit_found"]
    assert "input_image" in untraced[21]["prediction"]


def test_a_batch_of_photo_uploads_is_decoded_one_at_a_time(
    small_model_path: Path, mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker decodes a batch's uploads as the normaliser takes them: each photo is let
    # go before the next is decoded, so a batch of them is never all in memory at once.
    model = model_store.load(small_model_path)
    images, _ = mnist
    photos = [
        _png(255 - np.asarray(Image.fromarray(images[k]).resize((600, 600)))) for k in range(3)
    ]
    files = [photos[0], _png(images[3]), *photos[1:], b"text"]
    alive: list[weakref.ref[Image.Image]] = []
    decode = inference.decode_image

    def decode_and_watch(data: bytes, max_pixels: int) -> Image.Image:
        assert [ref() for ref in alive] == [None] * len(alive)
        image = decode(data, max_pixels)
        if image.size != (28, 28):  # a batch's MNIST-like images are kept, and small
            alive.append(weakref.ref(image))
        return image

    monkeypatch.setattr(inference, "decode_image", decode_and_watch)
    gc.disable()  # freed by their last reference going, not by a collection
    try:
        answers = predict_files(files, model, 10**6)
    finally:
        gc.enable()
    assert len(alive) == 3
    assert [answer["error"] is None for answer in answers] == [True] * 4 + [False]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "0.7", True])
def test_an_invalid_ink_gamma_is_neither_saved_nor_loaded(
    small_model_path: Path, tmp_path: Path, bad: object
) -> None:
    trained = model_store.load(small_model_path)
    path = tmp_path / "bad.joblib"
    with pytest.raises(ModelIntegrityError, match="ink_gamma"):
        model_store.save(replace(trained, metadata=dict(trained.metadata), ink_gamma=bad), path)
    assert not path.exists()
    # a file written some other way, its metadata matching it, is refused at load
    model_store.save(replace(trained, metadata=dict(trained.metadata)), path)
    artifact = joblib.load(path)
    artifact["ink_gamma"] = bad
    joblib.dump(artifact, path)
    meta = json.loads(model_store.metadata_path(path).read_text())
    meta["sha256"] = model_store.file_sha256(path)
    model_store.metadata_path(path).write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="ink_gamma"):
        model_store.load(path)


def test_a_tampered_model_is_refused(model_copy: Path) -> None:
    with model_copy.open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(ModelIntegrityError, match="refusing"):
        model_store.load(model_copy)


def test_a_model_from_another_sklearn_is_refused(model_copy: Path) -> None:
    meta_path = model_store.metadata_path(model_copy)
    meta = json.loads(meta_path.read_text())
    meta["sklearn_version"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match=r"scikit-learn 0\.0\.1"):
        model_store.load(model_copy)


def test_missing_model_or_metadata(model_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        model_store.load(tmp_path / "absent.joblib")
    model_store.metadata_path(model_copy).unlink()
    with pytest.raises(ModelIntegrityError, match="metadata"):
        model_store.load(model_copy)


def test_ensure_served_trains_when_missing_and_retrains_a_bad_model(
    mnist_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "fresh.joblib"
    settings = Settings(
        model_path=path, mnist_data_dir=mnist_dir, mnist_cache_dir=tmp_path, train_limit=1000
    )
    lines: list[str] = []
    first = ensure_served(settings, lines.append)
    assert path.is_file()
    assert any("training one" in line for line in lines)
    assert any(line.startswith("train: fitting") for line in lines)

    lines.clear()
    assert ensure_served(settings, lines.append).version == first.version
    assert lines == []  # loaded, not trained

    path.write_bytes(path.read_bytes() + b"junk")  # the served version's file, too
    lines.clear()
    ensure_served(settings, lines.append)
    assert any("Retraining" in line for line in lines)
    model_store.load(path)  # valid again


def test_training_is_reproducible(mnist_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        model_path=tmp_path / "a.joblib",
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=tmp_path,
        train_limit=1500,
    )
    one = model_store.train(settings, lambda _: None)
    two = model_store.train(settings, lambda _: None)
    x = np.random.default_rng(0).random((50, 784), dtype=np.float32)
    assert np.array_equal(one.probabilities(x), two.probabilities(x))


def test_softmax_and_temperature() -> None:
    scores = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    probs = softmax(scores.copy(), 1.0)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.all(softmax(scores.copy(), 10.0).max(axis=1) < probs.max(axis=1))

    # Labels drawn from softmax(logits): T=1 is calibrated, so logits x5 need T of about 5.
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (5000, 3))
    probs = softmax(logits.copy(), 1.0)
    labels = np.array([rng.choice(3, p=row) for row in probs])
    assert 4.5 < fit_temperature(logits * 5, labels) < 5.5


def test_expected_calibration_error() -> None:
    labels = np.array([0, 1, 0, 1])
    perfect = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, labels) == pytest.approx(0.0)
    wrong = perfect[:, ::-1]
    assert expected_calibration_error(wrong, labels) == pytest.approx(1.0)


def test_other_writers_join_the_training_data(
    mnist_dir: Path, optdigits_dir: Path, tmp_path: Path
) -> None:
    base = dict(mnist_data_dir=mnist_dir, mnist_cache_dir=tmp_path, train_limit=1000)
    lines: list[str] = []
    alone = model_store.train(Settings(model_path=tmp_path / "a.joblib", **base), lines.append)
    assert alone.metadata["other_writers_images"] == 0  # TRAIN_LIMIT: MNIST only
    assert not any("optdigits" in line for line in lines)
    assert set(alone.metadata["data_sha256"]) == set(mnist.dataset_checksums())

    both = model_store.train(
        Settings(
            model_path=tmp_path / "b.joblib",
            optdigits_data_dir=optdigits_dir,
            train_other_writers=True,
            **base,
        ),
        lines.append,
    )
    scans = both.metadata["other_writers_images"]
    copies = model_store.OTHER_WRITERS_COPIES
    assert 0.98 * copies * optdigits.ROWS <= scans <= copies * optdigits.ROWS
    assert both.metadata["train_images"] == alone.metadata["train_images"] + scans
    assert both.metadata["data_sha256"][optdigits.CHECKSUM_KEY] == optdigits.SHA256
    assert any("optdigits" in line for line in lines)


@pytest.fixture(scope="module")
def two_heads(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained with one render of each digit per typeface: two heads."""
    path = tmp_path_factory.mktemp("two-heads") / "m.joblib"
    settings = Settings(
        model_path=path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=path.parent,
        train_limit=1500,
        train_typeface_renders=1,
    )
    model_store.save(model_store.train(settings, lambda _: None), path)
    return path


def test_typefaces_train_a_general_head_and_an_mnist_head_without_them(two_heads: Path) -> None:
    model = model_store.load(two_heads)
    meta = model.metadata
    assert model.mnist_head is not None and meta["format"] == model_store.ARTIFACT_FORMAT
    assert 0.98 * 2000 <= meta["typeface_images"] <= 2000  # 200 typefaces, 10 digits, 1 render
    assert meta["mnist_head"]["train_images"] == meta["train_images"] - meta["typeface_images"]
    assert meta["data_sha256"][typefaces.CHECKSUM_KEY] == typefaces.checksum(
        typefaces.usable_fonts()
    )
    assert meta["mnist_temperature"] == model.mnist_temperature > 0
    assert meta["test_accuracy"] > 0.85 and meta["general_head_test_accuracy"] > 0.85
    # the two heads are different classifiers on the same features
    assert not np.allclose(model.mnist_head.coef_, model.pipeline.named_steps["sgd"].coef_)


def _unsure(model: model_store.Model) -> model_store.Model:
    """The small model at temperature 1. At its fitted temperatures (a few thousandths) it
    is certain of most digits with both heads, whose probabilities then round to the same
    one-hot rows; at 1 the heads' different scores show in every row."""
    model.temperature = model.mnist_temperature = 1.0
    return model


def test_each_row_is_read_by_the_head_its_path_chose(two_heads: Path, mnist) -> None:
    model = _unsure(model_store.load(two_heads))
    images, _ = mnist
    x = images[:40].reshape(40, -1).astype(np.float32) / 255
    as_mnist = model.probabilities(x, mnist_format=True)
    as_general = model.probabilities(x, mnist_format=False)
    assert not np.allclose(as_mnist, as_general)
    rows = np.arange(40) % 3 == 0
    mixed = model.probabilities(x, rows)
    assert np.allclose(mixed[rows], as_mnist[rows], atol=1e-6)
    assert np.allclose(mixed[~rows], as_general[~rows], atol=1e-6)
    # the compiled scorer against scikit-learn's own arithmetic, head by head
    mapped = model.pipeline[:-1].transform(x)
    expected = softmax(model.mnist_head.decision_function(mapped), model.mnist_temperature)
    assert np.allclose(as_mnist, expected, atol=1e-4)
    expected = softmax(model.pipeline.decision_function(x), model.temperature)
    assert np.allclose(as_general, expected, atol=1e-4)


def test_uploads_that_are_mnist_digits_go_to_the_mnist_head(two_heads: Path, mnist) -> None:
    model = _unsure(model_store.load(two_heads))
    images, _ = mnist
    x = images[:200].reshape(200, -1).astype(np.float32) / 255
    # a digit the two heads answer differently (to six decimals), so the route shows
    differ = np.abs(model.probabilities(x, True) - model.probabilities(x, False)).max(1)
    digit = images[int(differ.argmax())]
    as_mnist = _png(digit)  # MNIST's own format: the normaliser's fast path
    inverted = _png(255 - digit)  # the same digit dark on white: the general path
    answers = predict_files([as_mnist, inverted], model, 10**6)
    pixels = np.stack(
        [
            inference.prepare(data, 10**6, ink_gamma=model.ink_gamma).pixels
            for data in (as_mnist, inverted)
        ]
    )
    routed = model.predict(pixels, np.array([True, False]))
    assert [a["prediction"] for a in answers] == routed
    assert model.predict(pixels, np.array([False, True])) != routed


def test_training_with_typefaces_is_reproducible(
    two_heads: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    first = model_store.load(two_heads)
    again = model_store.train(
        Settings(
            model_path=tmp_path / "again.joblib",
            mnist_data_dir=mnist_dir,
            mnist_cache_dir=tmp_path,
            train_limit=1500,
            train_typeface_renders=1,
        ),
        lambda _: None,
    )
    x = np.random.default_rng(0).random((30, 784), dtype=np.float32)
    for rows in (True, False):
        assert np.array_equal(first.probabilities(x, rows), again.probabilities(x, rows))


def test_a_one_head_model_file_still_loads(two_heads: Path, tmp_path: Path, mnist) -> None:
    # Format 1, from before the MNIST head: no head keys; every row is read by the pipeline.
    model = model_store.load(two_heads)
    old = tmp_path / "old.joblib"
    model_store.save(replace(model, metadata=dict(model.metadata)), old)
    artifact = joblib.load(old)
    for key in ("mnist_head", "mnist_temperature"):
        del artifact[key]
    artifact["format"] = 1
    joblib.dump(artifact, old)
    meta = json.loads(model_store.metadata_path(old).read_text())
    meta["sha256"] = model_store.file_sha256(old)
    model_store.metadata_path(old).write_text(json.dumps(meta))
    loaded = model_store.load(old)
    assert loaded.mnist_head is None
    images, _ = mnist
    x = images[:20].reshape(20, -1).astype(np.float32) / 255
    assert np.allclose(loaded.probabilities(x, True), model.probabilities(x, False))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()
