"""``python -m bench.hog_speed``: the HOG step's time per image, unblended and blended.

Batches of ``--batch`` deskewed MNIST test digits on one thread, as a worker process
scores them; each mode's best of ``--rounds`` rounds of ``--repeat`` batches (the best,
since on a shared machine only slower runs come from elsewhere), taking turns.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from shared.features import HOG, PARAMS, Deskew
from shared.mnist import load_split
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=100)
    args = parser.parse_args(argv)
    settings = get_settings()
    test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    pixels = test.images[: args.batch].reshape(args.batch, -1).astype(np.float32) / 255
    digits = Deskew().transform(pixels)
    steps = {
        "unblended": HOG(PARAMS["nbins"], PARAMS["cell"], blend=False),
        "blended": HOG(PARAMS["nbins"], PARAMS["cell"], blend=True),
    }
    best = dict.fromkeys(steps, float("inf"))
    with threadpool_limits(1):
        for _ in range(args.rounds):
            for name, step in steps.items():
                started = time.perf_counter()
                for _ in range(args.repeat):
                    step.transform(digits)
                seconds = (time.perf_counter() - started) / (args.repeat * args.batch)
                best[name] = min(best[name], seconds)
    for name, seconds in best.items():
        print(f"HOG {name:<10} {seconds * 1e6:6.2f} µs an image (batches of {args.batch})")
    print(f"blended / unblended: {best['blended'] / best['unblended']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
