"""``python -m bench.model_speed BASELINE.joblib CANDIDATE.joblib``: two models' speed, one run.

What a worker process spends per image, measured the way it runs (one BLAS thread, as
``worker/lifecycle.py`` sets) and as ``python -m worker.evaluate`` measures it: the
latency of one 28x28 PNG (decode + normalise + predict) and the throughput of batches of
``--batch`` PNGs (images per second), for the baseline and the candidate model taking
turns, round after round, so that noise from other work on the machine falls on both.
Prints medians and the candidate/baseline ratios.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from threadpoolctl import threadpool_limits

from shared import model as model_store
from shared.mnist import load_split
from shared.settings import get_settings
from worker.evaluate import BATCH, batch_throughput, latency_ms, png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--images", type=int, default=1024, help="MNIST test digits as PNGs")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    settings = get_settings()
    max_pixels = settings.max_image_pixels
    test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    files = [png(image) for image in test.images[: args.images]]
    models = {
        "baseline": model_store.load(args.baseline),
        "candidate": model_store.load(args.candidate),
    }
    latency: dict[str, list[float]] = {name: [] for name in models}
    throughput: dict[str, list[float]] = {name: [] for name in models}
    with threadpool_limits(1):
        for _ in range(args.rounds):
            for name, model in models.items():
                latency[name].append(latency_ms(model, files[:256], max_pixels)["median"])
                throughput[name].append(batch_throughput(model, files, max_pixels, args.batch))
    batches = f"batches of {args.batch}, images/s"
    print(f"{'model':<10} {'version':<13} {'1 image, median ms':>19} {batches:>24}")
    medians = {
        name: (statistics.median(latency[name]), statistics.median(throughput[name]))
        for name in models
    }
    for name, model in models.items():
        print(f"{name:<10} {model.version:<13} {medians[name][0]:>19.3f} {medians[name][1]:>24.0f}")
    lat_ratio = medians["candidate"][0] / medians["baseline"][0]
    tput_ratio = medians["candidate"][1] / medians["baseline"][1]
    print(f"candidate / baseline: latency {lat_ratio:.2f}x, throughput {tput_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
