"""``python -m worker.train``: get MNIST, train the model, write it to ``MODEL_PATH``.

Progress goes to stderr as JSON log lines, stage by stage, with timings. A valid model
already there is kept (``--force`` retrains). A failure is one error line and exit 1.
"""

from __future__ import annotations

import argparse
import logging

from shared import model as model_store
from shared.errors import ModelUnavailable, ServiceError
from shared.logs import configure_logging
from shared.settings import get_settings

log = logging.getLogger("worker.train")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="retrain even if a model exists")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, service="worker")
    path = settings.model_path
    try:
        if not args.force:
            try:
                model = model_store.load(path)
            except ModelUnavailable:
                pass  # missing or failing its checks: ensure() says which, and trains
            else:
                log.info(
                    f"model {model.version}: already at {path}, kept (--force retrains)",
                    extra=_summary(model.metadata),
                )
                return 0
            model = model_store.ensure(settings, log.info)
        else:
            model = model_store.train(settings, log.info)
            model_store.save(model, path)
            log.info(f"model: saved to {path}")
    except ServiceError as exc:  # no data, no disk space for the model, ...
        log.error(exc.detail, extra={"code": exc.code})
        return 1
    meta = model.metadata
    log.info(
        f"model {model.version}: trained in {meta['training_seconds']}s",
        extra=_summary(meta),
    )
    return 0


def _summary(meta: dict[str, object]) -> dict[str, object]:
    return {"test_accuracy": meta["test_accuracy"], "test_ece": meta["test_ece"]}


if __name__ == "__main__":
    raise SystemExit(main())
