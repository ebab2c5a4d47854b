"""``python -m worker.train``: get MNIST, train the model, store it as a version and serve it.

Progress goes to stderr stage by stage, with timings. Without options it trains only if no
valid model is served. ``--force`` trains a new version even so, and makes it the served
one (``MODEL_PATH``; workers follow without a restart); ``--no-activate`` only stores it,
for ``python -m worker.models activate`` later.
"""

from __future__ import annotations

import argparse
import sys

from shared import model as model_store
from shared import versions
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if a model exists")
    parser.add_argument(
        "--no-activate",
        action="store_true",
        help="train a new version and only store it (implies --force)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.force or args.no_activate:
        model = model_store.train(settings, report)
        store = versions.ModelStore(settings.model_path)
        with store.lock():
            store.adopt()  # a model from before versions stays available for rollback
            version = store.add(model)
            if not args.no_activate:
                store.activate(version)
        state = "stored, not served" if args.no_activate else "stored and served"
        report(f"model: version {version} {state} ({store.folder})")
    else:
        model = versions.ensure_served(settings, report)
    meta = model.metadata
    report(
        f"model {model.version}: accuracy {meta['test_accuracy']:.4f}, "
        f"ECE {meta['test_ece']:.4f}, trained in {meta['training_seconds']}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
