"""Training, saving, verifying, loading and running the digit model.

The model file (``MODEL_PATH``, joblib) holds the fitted scikit-learn pipeline (its final
estimator an ``SGDClassifier``) and the temperature that calibrates its scores. A model
trained with typefaces (``shared.typefaces``) has two heads on the same features: the
pipeline's own, fitted on everything, reads uploads the normaliser had to reshape; a second
``SGDClassifier``, the MNIST head, fitted without the typeface digits, reads uploads that
already were MNIST digits (its fast path), each head with its own temperature. Printed
digits took the ``lowres`` handwriting set's dev part from 19 errors to 15 but, read by
the general head, cost MNIST's own test digits 3 to 9 (two seeds); the MNIST head keeps those
(README, the two-head and 24-render rounds). Beside the model file,
``<name>.json`` records the file's sha256, the scikit-learn version, the training
parameters, data checksums and test metrics. A model is only unpickled after its sha256
matches that record and its scikit-learn version matches ours.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from shared import features, optdigits, typefaces
from shared.augment import augment, enlarge_scans
from shared.errors import ModelIntegrityError, ModelUnavailable
from shared.mnist import dataset_checksums, load_split
from shared.normalize import INK_GAMMA
from shared.settings import Settings

log = logging.getLogger(__name__)

# 1: one head; 2: also an MNIST head (``mnist_head`` and ``mnist_temperature``, maybe None).
ARTIFACT_FORMAT = 2
READABLE_FORMATS = (1, 2)
# The MNIST head sees the training data without the typeface digits, two thirds of it. With
# 10 epochs its MNIST errors moved from 44 to 52 between seeds and shuffles; 30 made 42 to 45
# in four fits (README, the faint-ink round), for about 27 s more training.
MNIST_HEAD_EPOCHS = 30
# How many times each optdigits scan is enlarged into the training set: in the experiments
# (README, Model) one copy was best on the held-out digits, two cost MNIST errors.
OTHER_WRITERS_COPIES = 1


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- calibration and metrics --------------------------------------------------------------


def softmax(scores: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature`` (one temperature, or one per row as an
    (n, 1) array)."""
    z: np.ndarray = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood on held-out scores."""
    from scipy.optimize import minimize_scalar  # scipy comes with scikit-learn

    scores64 = scores.astype(np.float64)

    def nll(log_t: float) -> float:
        probs = softmax(scores64.copy(), float(np.exp(log_t)))
        return float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))

    found = minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded")
    return float(np.exp(found.x))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    """Per non-empty bin of the top-1 confidence: its edges, mean confidence, accuracy, count.

    The bins are those of ``calibration_curve(correct, confidence, n_bins=bins)``: equal
    widths over [0, 1], closed on the right. That function returns no counts, which the ECE
    and the diagram need, so the same binning is done here in one pass with numpy.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence)
    count = np.bincount(which, minlength=bins)
    confidence_sum = np.bincount(which, weights=confidence, minlength=bins)
    correct_sum = np.bincount(which, weights=correct, minlength=bins)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "confidence": float(confidence_sum[b] / count[b]),
            "accuracy": float(correct_sum[b] / count[b]),
            "count": int(count[b]),
        }
        for b in np.flatnonzero(count)
    ]


def calibration_error(bins: list[dict[str, float]]) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| of the bins."""
    gaps = [abs(b["accuracy"] - b["confidence"]) for b in bins]
    return float(np.average(gaps, weights=[b["count"] for b in bins]))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE over equal-width bins of the top-1 confidence."""
    return calibration_error(reliability(probs, labels, n_bins))


# --- the model in memory ---------------------------------------------------------------


@dataclass
class Model:
    """A loaded model: pipeline + temperature (and maybe an MNIST head), ready to predict."""

    pipeline: Any
    temperature: float
    classes: list[str]
    metadata: dict[str, Any]
    # The normaliser's lift of grey ink it was trained with (``shared.normalize``, step 6),
    # kept in the model file so its sha256 covers it; files from before the lift have none
    # and read uploads unlifted, as they were trained.
    ink_gamma: float = 1.0
    mnist_head: Any = None  # an SGDClassifier on the pipeline's features, or None
    mnist_temperature: float = 1.0
    scorer: Any = None  # a faster equivalent of pipeline.decision_function, if it has one

    def __post_init__(self) -> None:
        probe = np.random.default_rng(0).random((8, 784), dtype=np.float32)
        compiled = features.compile_pipeline(self.pipeline, probe, self.mnist_head)
        if compiled is None and self.mnist_head is not None:
            # only a compiled scorer routes rows between the heads
            raise ModelIntegrityError("A model with an MNIST head must compile; this one does not.")
        self.scorer = compiled or self.pipeline

    @property
    def version(self) -> str:
        return str(self.metadata.get("sha256", "unknown"))[:12]

    def probabilities(
        self, pixels: np.ndarray, mnist_format: np.ndarray | bool = True
    ) -> np.ndarray:
        """Calibrated class probabilities for (n, 784) float32 pixels in [0, 1].
        ``mnist_format``: which rows are MNIST digits as they came (the normaliser's fast
        path; MNIST's own arrays are), per row or for all; the MNIST head, if there is
        one, reads those."""
        if self.mnist_head is None:
            scores = np.asarray(self.scorer.decision_function(pixels), dtype=np.float64)
            return softmax(scores, self.temperature)
        rows = np.broadcast_to(np.asarray(mnist_format, bool), (len(pixels),))
        scores = np.asarray(self.scorer.decision_function(pixels, rows), dtype=np.float64)
        return softmax(scores, np.where(rows, self.mnist_temperature, self.temperature)[:, None])

    def predict(
        self, pixels: np.ndarray, mnist_format: np.ndarray | bool = True
    ) -> list[dict[str, Any]]:
        """One ``shared.schemas.Prediction`` body per row, as plain dicts: they go straight
        into the task's JSON result, and building models here cost more than predicting."""
        probs = self.probabilities(pixels, mnist_format)
        top = np.argsort(-probs, axis=1)[:, :3]
        answers = []
        for row, order in zip(probs.tolist(), top.tolist(), strict=True):
            top3 = [{"digit": self.classes[i], "probability": round(row[i], 6)} for i in order]
            answers.append(
                {"prediction": top3[0]["digit"], "confidence": top3[0]["probability"], "top3": top3}
            )
        return answers


def _as_features(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


# --- training -----------------------------------------------------------------------------


@contextmanager
def _stage(name: str, report: Callable[[str], None]) -> Iterator[None]:
    started = time.perf_counter()
    report(f"train: {name} ...")
    yield
    report(f"train: {name} done in {time.perf_counter() - started:.1f}s")


def train(settings: Settings, report: Callable[[str], None] = log.info) -> Model:
    """Train on MNIST's training images, augmented, and (unless told otherwise, see
    ``Settings.train_other_writers`` and ``train_typeface_renders``) UCI's optdigits
    training scans and digits printed in typefaces, with an MNIST head fitted without the
    latter; evaluate on MNIST's test images; return the model."""
    started = time.perf_counter()
    with _stage("loading MNIST", report):
        train_split = load_split(
            "train", settings.mnist_data_dir, settings.mnist_cache_dir, limit=settings.train_limit
        )
        test_split = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    x_all = _as_features(train_split.images)
    y_all = train_split.labels.astype(np.int64)
    # A random twelfth (5,000 of 60,000) calibrates the temperature; the pipeline never sees it.
    order = np.random.RandomState(settings.train_seed).permutation(len(y_all))
    holdout = max(len(y_all) // 12, 50)
    x_fit, y_fit = x_all[order[holdout:]], y_all[order[holdout:]]
    x_cal, y_cal = x_all[order[:holdout]], y_all[order[:holdout]]
    originals = len(y_fit)
    with _stage(f"augmenting {originals} training images", report):
        x_new, y_new = augment(train_split.images[order[holdout:]], y_fit, settings.train_seed)
        x_fit, y_fit = np.concatenate([x_fit, x_new]), np.concatenate([y_fit, y_new])
        del x_new
    augmented = len(y_fit) - originals
    other_writers = settings.train_other_writers
    if other_writers is None:
        other_writers = settings.train_limit is None
    data_sha256 = dataset_checksums()
    if other_writers:
        # MNIST's writers seldom made some shapes others make (see the README's Model section).
        with _stage("enlarging UCI's optdigits training scans (30 other writers)", report):
            scans, scan_labels = optdigits.load_training_scans(
                settings.optdigits_data_dir, settings.mnist_cache_dir
            )
            x_new, y_new = enlarge_scans(
                scans, scan_labels, OTHER_WRITERS_COPIES, settings.train_seed
            )
            x_fit, y_fit = np.concatenate([x_fit, x_new]), np.concatenate([y_fit, y_new])
            data_sha256[optdigits.CHECKSUM_KEY] = optdigits.SHA256
            del x_new
    mnist_rows = len(y_fit)  # the training data of the MNIST head: all before the typefaces
    renders = settings.train_typeface_renders
    if renders is None:
        renders = typefaces.RENDERS if settings.train_limit is None else 0
    if renders:
        with _stage(f"rendering each digit {renders} times in each typeface", report):
            fonts = typefaces.usable_fonts()
            images, labels = typefaces.render(fonts, renders, settings.train_seed)
            x_new, y_new = augment(images, labels, settings.train_seed + typefaces.SEED_STREAM)
            x_fit, y_fit = np.concatenate([x_fit, x_new]), np.concatenate([y_fit, y_new])
            data_sha256[typefaces.CHECKSUM_KEY] = typefaces.checksum(fonts)
            report(f"train:   {len(y_new)} digits from {len(fonts)} typefaces")
            del x_new, images

    pipeline = features.build_pipeline(settings.train_seed)
    mnist_head = None
    with _stage(f"fitting {features.describe(pipeline)} on {len(y_fit)} images", report):
        mapped = features.fit_features(pipeline, x_fit, y_fit, report)
        del x_fit
        features.fit_head(pipeline.named_steps["sgd"], mapped, y_fit, "sgd", report)
        if len(y_fit) > mnist_rows:
            # a leading slice of the mapped rows: a view, no copy of the largest array
            mnist_head = features.build_head(settings.train_seed, MNIST_HEAD_EPOCHS)
            features.fit_head(mnist_head, mapped[:mnist_rows], y_fit[:mnist_rows], "mnist", report)
        del mapped
        features.compact(pipeline, *([mnist_head] if mnist_head is not None else []))
    with _stage(f"calibrating on {len(y_cal)} held-out images", report):
        temperature = fit_temperature(np.asarray(pipeline.decision_function(x_cal)), y_cal)
        mnist_temperature = 1.0
        if mnist_head is not None:
            cal_mapped = pipeline[:-1].transform(x_cal)
            mnist_temperature = fit_temperature(mnist_head.decision_function(cal_mapped), y_cal)
    classes = [str(c) for c in pipeline.classes_]
    model = Model(
        pipeline=pipeline,
        temperature=temperature,
        classes=classes,
        metadata={},
        ink_gamma=INK_GAMMA,  # what augment's uploads went through: uploads get the same
        mnist_head=mnist_head,
        mnist_temperature=mnist_temperature,
    )

    with _stage(f"evaluating on {len(test_split)} test images", report):
        x_test = _as_features(test_split.images)
        probs = model.probabilities(x_test)
        y_test = test_split.labels.astype(np.int64)
        accuracy = float((probs.argmax(axis=1) == y_test).mean())
        ece = expected_calibration_error(probs, y_test)
        general = model.probabilities(x_test, mnist_format=False).argmax(axis=1)
        general_accuracy = float((general == y_test).mean())
    seconds = time.perf_counter() - started
    model.metadata = {
        "format": ARTIFACT_FORMAT,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "seed": settings.train_seed,
        "train_images": len(y_fit),
        "augmented_images": augmented,
        "other_writers_images": mnist_rows - originals - augmented,
        "typeface_images": len(y_fit) - mnist_rows,
        "typeface_renders": renders,
        "calibration_images": len(y_cal),
        "pipeline": features.describe(pipeline),
        "params": features.summary_params(pipeline),
        "temperature": temperature,
        "mnist_head": None
        if mnist_head is None
        else {"train_images": mnist_rows, "epochs": MNIST_HEAD_EPOCHS},
        "mnist_temperature": mnist_temperature if mnist_head is not None else None,
        "classes": classes,
        "data_sha256": data_sha256,
        # as uploads of MNIST digits are read: by the MNIST head where there is one
        "test_accuracy": accuracy,
        "test_ece": ece,
        "general_head_test_accuracy": general_accuracy,
        "training_seconds": round(seconds, 1),
        # the whole process's peak (Linux reports KiB): what training needs of the machine
        "training_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    report(
        f"train: test accuracy {accuracy:.4f}, ECE {ece:.4f}, "
        f"temperature {temperature:.3f}, {seconds:.1f}s in all"
    )
    return model


# --- saving and loading ------------------------------------------------------------------


def _valid_ink_gamma(value: object) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and 0 < value < math.inf


def save(model: Model, model_path: Path) -> None:
    """Write the model and its metadata atomically (readers never see half a file)."""
    if not _valid_ink_gamma(model.ink_gamma):
        raise ModelIntegrityError(f"Refusing to save an invalid ink_gamma ({model.ink_gamma!r}).")
    model_path.parent.mkdir(parents=True, exist_ok=True)
    artifact = {
        "format": ARTIFACT_FORMAT,
        "pipeline": model.pipeline,
        "temperature": model.temperature,
        "classes": model.classes,
        "ink_gamma": model.ink_gamma,
        "mnist_head": model.mnist_head,
        "mnist_temperature": model.mnist_temperature,
    }
    with tempfile.NamedTemporaryFile(dir=model_path.parent, suffix=".tmp", delete=False) as tmp:
        joblib.dump(artifact, tmp, compress=3)
    tmp_path = Path(tmp.name)
    model.metadata["sha256"] = file_sha256(tmp_path)
    model.metadata["size_bytes"] = tmp_path.stat().st_size
    model.metadata["ink_gamma"] = model.ink_gamma  # for operators: the file's is the one used
    meta_tmp = metadata_path(model_path).with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(model.metadata, indent=2) + "\n")
    # Metadata first: a model file without matching metadata would be refused anyway.
    os.replace(meta_tmp, metadata_path(model_path))
    os.replace(tmp_path, model_path)


def read_metadata(model_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(metadata_path(model_path).read_text()))
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"No readable metadata beside {model_path.name}.") from exc


def verify(model_path: Path) -> dict[str, Any]:
    """The model's metadata, once the file matches it (sha256) and our scikit-learn version;
    raises ``ModelUnavailable`` or ``ModelIntegrityError``. Nothing is unpickled."""
    if not model_path.is_file():
        raise ModelUnavailable(f"No model at {model_path}.")
    metadata = read_metadata(model_path)
    actual = file_sha256(model_path)
    if actual != metadata.get("sha256"):
        raise ModelIntegrityError(
            f"{model_path.name} has sha256 {actual[:12]}, its metadata says "
            f"{str(metadata.get('sha256'))[:12]}; refusing to load it."
        )
    if metadata.get("sklearn_version") != sklearn.__version__:
        raise ModelIntegrityError(
            f"{model_path.name} was trained with scikit-learn {metadata.get('sklearn_version')}, "
            f"this is {sklearn.__version__}; refusing to load it."
        )
    return metadata


def load(model_path: Path) -> Model:
    """Load a model after checking it against its metadata; never unpickles a mismatch."""
    metadata = verify(model_path)
    try:
        artifact = joblib.load(model_path)
    except Exception as exc:  # whatever unpickling raises, the file is unusable
        raise ModelIntegrityError(f"{model_path.name} could not be read ({exc}).") from exc
    if artifact.get("format") not in READABLE_FORMATS:
        raise ModelIntegrityError(f"{model_path.name} has an unknown format.")
    ink_gamma = artifact.get("ink_gamma", 1.0)  # none before the lift existed: unlifted
    if not _valid_ink_gamma(ink_gamma):
        raise ModelIntegrityError(f"{model_path.name} has an invalid ink_gamma ({ink_gamma!r}).")
    return Model(
        pipeline=artifact["pipeline"],
        temperature=float(artifact["temperature"]),
        classes=list(artifact["classes"]),
        metadata=metadata,
        ink_gamma=float(ink_gamma),
        mnist_head=artifact.get("mnist_head"),  # format 1 has none
        mnist_temperature=float(artifact.get("mnist_temperature", 1.0)),
    )
