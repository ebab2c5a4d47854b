"""``python -m worker.train``: get MNIST, train the model, write it to ``MODEL_PATH``.

Progress goes to stderr stage by stage, with timings. ``--force`` retrains even if a
valid model is already there.
"""

from __future__ import annotations

import argparse
import sys

from shared import model as model_store
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if a model exists")
    args = parser.parse_args(argv)
    settings = get_settings()

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.force:
        model = model_store.train(settings, report)
        model_store.save(model, settings.model_path)
        report(f"model: saved to {settings.model_path}")
    else:
        model = model_store.ensure(settings, report)
    meta = model.metadata
    report(
        f"model {model.version}: accuracy {meta['test_accuracy']:.4f}, "
        f"ECE {meta['test_ece']:.4f}, trained in {meta['training_seconds']}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
