"""``python -m worker.evaluate``: how good the model is, measured the way the worker runs it.

Prints accuracy, per-digit precision and recall, the confusion matrix, the expected
calibration error; all 10,000 test digits again as PNG uploads (decode + normalise +
predict), with how many answers match the in-memory ones; the latency per image and the
throughput of batches, on one thread as a worker process runs; the accuracy on the
project's real-world sets (photos, canvas drawings, large images, typed digits; see
``worker/realworld.py``) and on the handwriting MNIST under-represents, both parts (see
``worker/handwriting.py``), with the sources its wrong answers there came from (a font,
pen strokes, scans), beside a reference that is not the model (the same features
with a classifier fitted on each set's dev part, scored on its test part: what training
data from the set's own writers would allow); and the training facts from the model's
metadata. A model with two heads (``shared.model``) is scored on MNIST's arrays by its
MNIST head, as MNIST uploads are read; the line below says what its general head makes of
them. Each goal is printed with its target. ``--plots DIR`` also writes a
confusion-matrix PNG and a reliability-diagram PNG there (matplotlib, from the dev extra).

The metrics come from ``sklearn.metrics``; the reliability bins (``shared.model``, which
training uses too) are the equal-width, right-closed bins of
``sklearn.calibration.calibration_curve``, with their counts, from which the ECE follows.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from shared import versions
from shared.errors import ServiceError
from shared.features import HOG, PARAMS, Deskew
from shared.inference import predict_files, prepare
from shared.mnist import load_split
from shared.model import Model, calibration_error, reliability
from shared.normalize import INK_GAMMA
from shared.settings import Settings, get_settings
from worker import handwriting
from worker.realworld import make_sets

HANDWRITTEN_SETS = ("photo", "canvas", "large")
DIGITS = np.arange(10)
TARGET_ACCURACY = 0.995
TARGET_ECE = 0.01
TARGET_HANDWRITING = 0.97
TARGET_LATENCY_MS = 1.5
BATCH = 64


def latency_ms(model: Model, files: list[bytes], max_pixels: int) -> dict[str, float]:
    """Decode + normalise + predict, one file at a time, as the worker does."""
    predict_files(files[:20], model, max_pixels)  # warm caches
    times = []
    for data in files:
        started = time.perf_counter()
        predict_files([data], model, max_pixels)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median": statistics.median(times),
        "p90": times[int(len(times) * 0.9)],
        "p99": times[int(len(times) * 0.99)],
    }


def batch_throughput(
    model: Model, files: list[bytes], max_pixels: int, batch: int = BATCH
) -> float:
    """Images per second through ``predict_files`` in batches of ``batch``, as a worker
    process answers a micro-batched task."""
    predict_files(files[:batch], model, max_pixels)  # warm caches
    started = time.perf_counter()
    done = 0
    for start in range(0, len(files) - batch + 1, batch):
        predict_files(files[start : start + batch], model, max_pixels)
        done += batch
    return done / (time.perf_counter() - started)


def answers_on_files(model: Model, files: list[bytes], max_pixels: int) -> list[str | None]:
    """The predicted digit per file (None where the upload got an error), in batches."""
    out: list[str | None] = []
    for start in range(0, len(files), BATCH):
        for answer in predict_files(files[start : start + BATCH], model, max_pixels):
            out.append(None if answer["prediction"] is None else answer["prediction"]["prediction"])
    return out


def accuracy_on_files(model: Model, items: list[tuple[bytes, int]], max_pixels: int) -> float:
    answers = answers_on_files(model, [data for data, _ in items], max_pixels)
    right = sum(answer == str(label) for answer, (_, label) in zip(answers, items, strict=True))
    return right / len(items)


def scored_samples(
    model: Model, samples: list[handwriting.Sample], max_pixels: int
) -> dict[str, Any]:
    """Accuracy on ``samples``, and where the wrong answers came from: per source with any,
    how many of its images were read wrong (most first)."""
    answers = answers_on_files(model, [sample.data for sample in samples], max_pixels)
    images: Counter[str] = Counter(sample.source for sample in samples)
    wrong: Counter[str] = Counter(
        sample.source
        for answer, sample in zip(answers, samples, strict=True)
        if answer != str(sample.label)
    )
    return {
        "images": len(samples),
        "accuracy": 1 - wrong.total() / len(samples),
        "wrong_by_source": {
            source: {"wrong": count, "images": images[source]}
            for source, count in wrong.most_common()
        },
    }


def fitted_on_dev_accuracy(
    dev: list[tuple[bytes, int]], test: list[tuple[bytes, int]], max_pixels: int
) -> float:
    """Accuracy on ``test`` of a reference classifier fitted on ``dev``, the other part of
    the same set: the model's Deskew and HOG steps, then an RBF SVM. It shows what these
    features allow once the training data has the set's own writers, fonts and rendering,
    which the served model never sees. An upload the normaliser
    refuses is left out of the fit and counts as wrong in the score."""

    def pixels(items: list[tuple[bytes, int]]) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        for data, label in items:
            try:
                # a new fit: on what the normaliser gives new models
                rows.append(prepare(data, max_pixels, ink_gamma=INK_GAMMA).pixels)
            except ServiceError:
                continue
            labels.append(label)
        return np.asarray(rows, np.float32).reshape(-1, 28 * 28), np.asarray(labels)

    hog = HOG(PARAMS["nbins"], PARAMS["cell"], PARAMS["blend"])
    reference = make_pipeline(Deskew(), hog, SVC(C=10))
    reference.fit(*pixels(dev))
    x_test, y_test = pixels(test)
    right = int((reference.predict(x_test) == y_test).sum()) if len(y_test) else 0
    return right / len(test)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def plot(matrix: np.ndarray, bins: list[dict[str, float]], ece: float, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figure, axes = plt.subplots(figsize=(5.2, 4.6), dpi=100)
    shown = np.log10(matrix + 1)
    axes.imshow(shown, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            dark = shown[row, col] > shown.max() * 0.6
            axes.text(
                col,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    axes.set_xticks(range(10))
    axes.set_yticks(range(10))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix, MNIST test (10,000)")
    figure.tight_layout()
    written.append(folder / "confusion_matrix.png")
    figure.savefig(written[-1])
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(4.6, 4.6), dpi=100)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    axes.plot(
        [b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label="model"
    )
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Reliability, MNIST test (ECE {ece:.4f})")
    axes.legend(loc="upper left")
    figure.tight_layout()
    written.append(folder / "reliability.png")
    figure.savefig(written[-1])
    plt.close(figure)
    return written


def evaluate(
    settings: Settings, per_set: int, seed: int, handwriting_n: int, plots: Path | None
) -> dict[str, Any]:
    model = versions.ensure_served(settings)
    test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    pixels = test.images.reshape(len(test), -1).astype(np.float32) / np.float32(255)
    labels = test.labels.astype(np.int64)
    probs = model.probabilities(pixels)  # MNIST's own digits: the MNIST head, if any
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, labels=DIGITS)
    precision, recall, _, _ = precision_recall_fscore_support(
        labels, predicted, labels=DIGITS, average=None, zero_division=0
    )
    bins = reliability(probs, labels)
    ece = calibration_error(bins)
    max_pixels = settings.max_image_pixels
    with threadpool_limits(1):  # one BLAS thread, as in a worker process
        files = [png(image) for image in test.images]
        as_uploads = answers_on_files(model, files, max_pixels)
        latency = latency_ms(model, files[:1000], max_pixels)
        throughput = batch_throughput(model, files[:2048], max_pixels)
    in_memory = [model.classes[i] for i in predicted]
    meta = model.metadata
    report: dict[str, Any] = {
        "model_version": model.version,
        "pipeline": meta.get("pipeline"),
        "accuracy": float(accuracy_score(labels, predicted)),
        "errors": int((predicted != labels).sum()),
        "ece": ece,
        "general_head_errors": None
        if model.mnist_head is None
        else int((model.probabilities(pixels, mnist_format=False).argmax(1) != labels).sum()),
        "precision": precision.round(4).tolist(),
        "recall": recall.round(4).tolist(),
        "confusion_matrix": matrix.tolist(),
        "mnist_as_png": {
            "images": len(files),
            "accuracy": float(
                np.mean([a == str(y) for a, y in zip(as_uploads, labels.tolist(), strict=True)])
            ),
            "same_answers": int(sum(a == b for a, b in zip(as_uploads, in_memory, strict=True))),
        },
        "latency_ms_per_image": latency,
        "batch_images_per_second": throughput,
        "training": {
            "seconds": meta.get("training_seconds"),
            "peak_rss_mb": meta.get("training_peak_rss_mb"),
            "train_images": meta.get("train_images"),
            "model_mb": round(float(meta.get("size_bytes", 0)) / 1e6, 1),
        },
        "real_world": {},
        "handwriting": {},
    }
    sets = make_sets(test.images, test.labels, n=per_set, seed=seed)
    for name, items in sets.items():
        report["real_world"][name] = {
            "images": len(items),
            "accuracy": accuracy_on_files(model, items, max_pixels),
        }
    parts = {part: handwriting.make_samples(part, handwriting_n) for part in ("dev", "test")}
    for part, named in parts.items():
        report["handwriting"][part] = {
            name: scored_samples(model, samples, max_pixels) for name, samples in named.items()
        }
    report["handwriting_fitted_on_dev"] = {
        name: fitted_on_dev_accuracy(
            handwriting.as_pairs(parts["dev"][name]),
            handwriting.as_pairs(parts["test"][name]),
            max_pixels,
        )
        for name in handwriting.SET_NAMES
    }
    if plots is not None:
        report["plots"] = [str(path) for path in plot(matrix, bins, ece, plots)]
    return report


def _verdict(ok: bool) -> str:
    return "ok" if ok else "BELOW TARGET"


def print_report(report: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"model {report['model_version']}: {report['pipeline']}\n")
    out(
        f"MNIST test: accuracy {report['accuracy']:.4f} ({report['errors']} errors; target "
        f"{TARGET_ACCURACY}: {_verdict(report['accuracy'] >= TARGET_ACCURACY)}), ECE "
        f"{report['ece']:.4f} (target {TARGET_ECE}: {_verdict(report['ece'] <= TARGET_ECE)})\n"
    )
    if report.get("general_head_errors") is not None:
        out(
            "  read by the MNIST head, as uploads of MNIST digits are; the general head, "
            f"which reads every other upload, makes {report['general_head_errors']} errors\n"
        )
    train = report["training"]
    out(
        f"training: {train['seconds']} s on {train['train_images']} images, peak memory "
        f"{train['peak_rss_mb']} MB; model file {train['model_mb']} MB\n\n"
    )
    out("digit  precision  recall\n")
    for digit, (p, r) in enumerate(zip(report["precision"], report["recall"], strict=True)):
        out(f"  {digit}     {p:.4f}   {r:.4f}\n")
    out("\nconfusion matrix (rows: true, columns: predicted)\n")
    out("      " + "".join(f"{d:>6}" for d in range(10)) + "\n")
    for digit, row in enumerate(report["confusion_matrix"]):
        out(f"  {digit:>3} " + "".join(f"{v:>6}" for v in row) + "\n")
    lat = report["latency_ms_per_image"]
    out(
        f"\nlatency per image (decode + normalise + predict, PNG 28x28, one thread): median "
        f"{lat['median']:.3f} ms (target {TARGET_LATENCY_MS}: "
        f"{_verdict(lat['median'] <= TARGET_LATENCY_MS)}), p90 {lat['p90']:.3f} ms, "
        f"p99 {lat['p99']:.3f} ms\n"
    )
    out(f"batches of {BATCH} PNGs, one thread: {report['batch_images_per_second']:.0f} images/s\n")
    uploads = report["mnist_as_png"]
    out(
        f"MNIST test as PNG uploads ({uploads['images']:,}): accuracy "
        f"{uploads['accuracy']:.4f}, {uploads['same_answers']:,} answers the same as in memory\n"
    )
    out("\nreal-world sets (through decode + normalise + predict):\n")
    for name, row in report["real_world"].items():
        target = 0.97 if name in HANDWRITTEN_SETS else 0.90
        verdict = "ok" if row["accuracy"] >= target else "BELOW TARGET"
        out(
            f"  {name:<7} {row['images']:>5} images  accuracy {row['accuracy']:.4f}  "
            f"(target {target:.2f}: {verdict})\n"
        )
    out(f"\nhandwriting MNIST under-represents (target {TARGET_HANDWRITING:.2f} each):\n")
    out("          " + "".join(f"{part:>18}" for part in report["handwriting"]) + "\n")
    names = list(next(iter(report["handwriting"].values())))
    for name in names:
        cells = []
        for part in report["handwriting"].values():
            row = part[name]
            mark = "" if row["accuracy"] >= TARGET_HANDWRITING else " *"
            cells.append(f"{row['accuracy']:.4f} ({row['images']}){mark}")
        out(f"  {name:<7} " + "".join(f"{cell:>18}" for cell in cells) + "\n")
    out("  (* below target)\n")
    out("  wrong answers by source (wrong of the source's images):\n")
    for name in names:
        for part, named in report["handwriting"].items():
            traced = named[name]["wrong_by_source"]
            if traced:
                sources = ", ".join(
                    f"{source} {row['wrong']} of {row['images']}" for source, row in traced.items()
                )
                out(f"    {name} {part}: {sources}\n")
    reference = ", ".join(
        f"{name} {accuracy:.4f}" for name, accuracy in report["handwriting_fitted_on_dev"].items()
    )
    out(
        "  reference, not the model: the same Deskew + HOG with an RBF SVM fitted on each dev "
        f"part, scored on its test part: {reference}\n"
    )
    for path in report.get("plots", []):
        out(f"wrote {path}\n")


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=500, help="images per real-world set")
    parser.add_argument("--seed", type=int, default=1, help="seed of the real-world sets")
    parser.add_argument(
        "--handwriting",
        type=_at_least_two,
        default=500,
        help="images per generated handwriting set (at least 2: the reference needs two digits)",
    )
    parser.add_argument("--plots", type=Path, help="write the two PNGs into this folder")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    report = evaluate(get_settings(), args.per_set, args.seed, args.handwriting, args.plots)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
