"""``python -m worker.train``: get the data, train the model, store it as a version, serve it.

Progress goes to stderr as JSON log lines, stage by stage, with timings. Without options a
valid served model is kept and nothing is trained. ``--force`` trains a new version even
so, and makes it the served one (``MODEL_PATH``; workers follow without a restart);
``--no-activate`` only stores it, for ``python -m worker.models activate`` later. A failure
is one error line and exit 1.
"""

from __future__ import annotations

import argparse
import logging

from shared import model as model_store
from shared import versions
from shared.errors import ModelUnavailable, ServiceError
from shared.logs import configure_logging
from shared.model import Model
from shared.settings import Settings, get_settings

log = logging.getLogger("worker.train")


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
    configure_logging(settings.log_level, service="worker")
    try:
        if args.force or args.no_activate:
            model = _train_version(settings, activate=not args.no_activate)
        else:
            try:
                model = versions.load_served(settings)
            except ModelUnavailable:
                model = versions.ensure_served(settings, log.info)  # says why, then trains
            else:
                log.info(
                    f"model {model.version}: already served from {settings.model_path}, kept "
                    "(--force trains a new version)",
                    extra=_summary(model.metadata),
                )
                return 0
    except ServiceError as exc:  # no data, no disk space for the model, ...
        log.error(exc.detail, extra={"code": exc.code})
        return 1
    meta = model.metadata
    log.info(f"model {model.version}: trained in {meta['training_seconds']}s", extra=_summary(meta))
    return 0


def _train_version(settings: Settings, activate: bool) -> Model:
    model = model_store.train(settings, log.info)
    store = versions.ModelStore(settings.model_path)
    with store.lock():
        store.adopt()  # a model from before versions stays available for rollback
        version = store.add(model)
        if activate:
            store.activate(version)
    state = "stored and served" if activate else "stored, not served"
    log.info(f"model: version {version} {state} ({store.folder})")
    return model


def _summary(meta: dict[str, object]) -> dict[str, object]:
    return {"test_accuracy": meta["test_accuracy"], "test_ece": meta["test_ece"]}


if __name__ == "__main__":
    raise SystemExit(main())
