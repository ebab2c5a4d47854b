"""``python -m bench.model_speed BASELINE.joblib CANDIDATE.joblib``: two models' speed, one run.

What a worker process spends per image, measured the way it runs (one BLAS thread, as
``worker/lifecycle.py`` sets): the latency of one 28x28 PNG (decode + normalise +
predict) and the throughput of batches of ``--batch`` PNGs (images per second), for the
baseline and the candidate model taking turns, round after round, so that noise from other
work on the machine falls on both. Prints medians and the candidate/baseline ratios.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from shared import model as model_store
from shared.inference import predict_files
from shared.mnist import load_split
from shared.model import Model
from shared.settings import get_settings


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def one_image_ms(model: Model, files: list[bytes], max_pixels: int) -> float:
    times = []
    for data in files:
        started = time.perf_counter()
        predict_files([data], model, max_pixels)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def batch_images_per_second(model: Model, files: list[bytes], batch: int, max_pixels: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(files) - batch + 1, batch):
        predict_files(files[start : start + batch], model, max_pixels)
    done = (len(files) // batch) * batch
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--images", type=int, default=1024, help="MNIST test digits as PNGs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    settings = get_settings()
    test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    files = [_png(image) for image in test.images[: args.images]]
    models = {
        "baseline": model_store.load(args.baseline),
        "candidate": model_store.load(args.candidate),
    }
    latency: dict[str, list[float]] = {name: [] for name in models}
    throughput: dict[str, list[float]] = {name: [] for name in models}
    with threadpool_limits(1):
        for model in models.values():
            predict_files(files[:64], model, settings.max_image_pixels)  # warm caches
        for _ in range(args.rounds):
            for name, model in models.items():
                latency[name].append(one_image_ms(model, files[:256], settings.max_image_pixels))
                throughput[name].append(
                    batch_images_per_second(model, files, args.batch, settings.max_image_pixels)
                )
    batches = f"batches of {args.batch}, images/s"
    print(f"{'model':<10} {'version':<13} {'1 image, median ms':>19} {batches:>24}")
    for name, model in models.items():
        print(
            f"{name:<10} {model.version:<13} {statistics.median(latency[name]):>19.3f} "
            f"{statistics.median(throughput[name]):>24.0f}"
        )
    lat_ratio = statistics.median(latency["candidate"]) / statistics.median(latency["baseline"])
    tput_ratio = statistics.median(throughput["candidate"]) / statistics.median(
        throughput["baseline"]
    )
    print(f"candidate / baseline: latency {lat_ratio:.2f}x, throughput {tput_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
