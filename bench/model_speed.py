"""``python -m bench.model_speed BASELINE.joblib CANDIDATE.joblib``: two models' speed, one run.

What a worker process spends per image, measured the way it runs (one BLAS thread, as
``worker/lifecycle.py`` sets) and as ``python -m worker.evaluate`` measures it: the
latency of one 28x28 PNG (decode + normalise + predict) and the throughput of batches of
``--batch`` PNGs (images per second), for the baseline and the candidate model taking
turns, round after round, so that noise from other work on the machine falls on both.
Prints medians and the candidate/baseline ratios.

``--baseline-checkout DIR`` measures each model on its own code instead: every round, the
baseline in a fresh process of the checkout in ``DIR`` (with its ``.venv``, as ``make``
builds it), then the candidate in a fresh process of this one. That is the comparison when
a change touches the code that scores, not only the model file, and it times an older model
on the code it shipped with (where ``batch_throughput`` had no size, its ``BATCH``, 64). Any
checkout from ``5247b88^`` on will do: it needs ``shared.model.load``, ``load_split`` with a
data and a cache folder, and ``worker.evaluate``'s ``latency_ms`` and ``batch_throughput``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from shared import model as model_store
from shared.mnist import load_split
from shared.settings import get_settings
from worker.evaluate import BATCH, batch_throughput, latency_ms, png

REPO = Path(__file__).resolve().parents[1]
# What one fresh process of a checkout runs: its own code loads and times the model.
# Older checkouts' batch_throughput took no batch size (they used BATCH, 64), and their
# evaluate named its PNG encoder _png: the snippet brings its own.
_ONE_MODEL = """
import inspect, io, json, sys
from pathlib import Path
from PIL import Image
from threadpoolctl import threadpool_limits
from shared import model as model_store
from shared.mnist import load_split
from shared.settings import get_settings
from worker import evaluate
path, images, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()
settings = get_settings()
test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
files = [png(image) for image in test.images[:images]]
model = model_store.load(path)
pixels = settings.max_image_pixels
sized = "batch" in inspect.signature(evaluate.batch_throughput).parameters
if not sized and batch != evaluate.BATCH:
    sys.exit(f"this checkout times batches of {evaluate.BATCH} only")
with threadpool_limits(1):
    latency = evaluate.latency_ms(model, files[:256], pixels)["median"]
    extra = (batch,) if sized else ()
    throughput = evaluate.batch_throughput(model, files, pixels, *extra)
print(json.dumps({"version": model.version, "latency": latency, "throughput": throughput}))
"""


def _in_checkout(
    checkout: Path, python: Path, model: Path, images: int, batch: int
) -> dict[str, Any]:
    """One model's latency and throughput, timed by a fresh process of ``checkout``."""
    done = subprocess.run(
        [str(python), "-c", _ONE_MODEL, str(model.resolve()), str(images), str(batch)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--images", type=int, default=1024, help="MNIST test digits as PNGs")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        help="time the baseline with this checkout's code (and .venv), the candidate with ours",
    )
    args = parser.parse_args(argv)
    if args.baseline_checkout is not None:
        # absolute: the baseline runs with its checkout as the working directory
        args.baseline_checkout = args.baseline_checkout.resolve()
        return _on_their_own_code(args)
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


def _on_their_own_code(args: argparse.Namespace) -> int:
    checkouts = {
        "baseline": (args.baseline_checkout, args.baseline_checkout / ".venv" / "bin" / "python"),
        "candidate": (REPO, Path(sys.executable)),
    }
    paths = {"baseline": args.baseline, "candidate": args.candidate}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, (checkout, python) in checkouts.items():
            runs[name].append(_in_checkout(checkout, python, paths[name], args.images, args.batch))
    print(f"{'model':<10} {'version':<13} {'code':<28} {'1 image, median ms':>19} {'images/s':>9}")
    medians = {}
    for name, results in runs.items():
        latency = statistics.median(r["latency"] for r in results)
        throughput = statistics.median(r["throughput"] for r in results)
        medians[name] = (latency, throughput)
        code = str(checkouts[name][0])[-28:]
        print(
            f"{name:<10} {results[0]['version']:<13} {code:<28} {latency:>19.3f} {throughput:>9.0f}"
        )
    lat_ratio = medians["candidate"][0] / medians["baseline"][0]
    tput_ratio = medians["candidate"][1] / medians["baseline"][1]
    print(
        f"candidate / baseline, each on its own code ({args.rounds} rounds, fresh processes): "
        f"latency {lat_ratio:.2f}x, throughput {tput_ratio:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
