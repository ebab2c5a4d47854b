"""``python -m worker.models``: list the stored model versions and choose the served one.

    python -m worker.models list
    python -m worker.models activate VERSION                # serve it to every image
    python -m worker.models activate VERSION --canary 10    # serve it to 10% of the images
    python -m worker.models drop-canary                     # back to the served one alone

A version is named by the ``model_version`` that answers carry. Workers follow within
``MODEL_RELOAD_SECONDS``, without a restart. An unknown or damaged version is refused with
one line on stderr and a non-zero exit, and nothing changes.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from shared.errors import ServiceError
from shared.settings import Settings, get_settings
from shared.versions import ModelStore, Pointer

EXIT_REFUSED = 1


def _number(value: object, template: str) -> str:
    return template.format(value) if isinstance(value, int | float) else "-"


def list_versions(store: ModelStore, out: TextIO) -> None:
    found = store.versions()
    if not found:
        legacy = (
            " (a model from before versions is at MODEL_PATH)" if store.model_path.is_file() else ""
        )
        print(f"no model versions in {store.folder}{legacy}", file=out)
        return
    pointer = store.read_pointer()
    rows = [("VERSION", "TRAINED AT", "ACCURACY", "ECE", "LIFT", "SIZE", "SERVED")]
    for info in found:
        meta = info.metadata
        size = meta.get("size_bytes")
        role = info.role
        if role == "canary" and pointer is not None:
            role = f"canary {pointer.canary_percent:g}%"
        elif role == "served" and pointer is not None and pointer.canary:
            role = f"served {100 - pointer.canary_percent:g}%"
        rows.append(
            (
                info.version,
                str(meta.get("trained_at", "-")),
                _number(meta.get("test_accuracy"), "{:.4f}"),
                _number(meta.get("test_ece"), "{:.4f}"),
                # files from before the ink lift have none, and read uploads unlifted;
                # unreadable metadata ({}) says nothing
                _number(meta.get("ink_gamma", 1.0) if meta else None, "{:g}"),
                _number(size / 1e6 if isinstance(size, int) else None, "{:.1f} MB"),
                role or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


def describe(pointer: Pointer | None) -> str:
    if pointer is None:
        return "nothing"
    if pointer.canary:
        return f"{pointer.served} with canary {pointer.canary} for {pointer.canary_percent:g}%"
    return pointer.served


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the stored versions and which one is served")
    activate = commands.add_parser("activate", help="serve VERSION (older ones included)")
    activate.add_argument("version", help="a model_version, as answers carry it")
    activate.add_argument(
        "--canary",
        type=float,
        metavar="PERCENT",
        help="serve VERSION only for this share of images, until activated fully or dropped",
    )
    commands.add_parser("drop-canary", help="stop serving the canary")
    args = parser.parse_args(argv)
    settings = settings or get_settings()
    store = ModelStore(settings.model_path)
    try:
        if args.command == "list":
            list_versions(store, sys.stdout)
            return 0
        with store.lock():
            store.adopt()  # a model from before versions stays available for rollback
            before = store.read_pointer()
            if args.command == "drop-canary":
                after = store.drop_canary()
            elif args.canary is not None:
                after = store.start_canary(args.version, args.canary)
            else:
                after = store.activate(args.version)
    except (ServiceError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, ServiceError) else str(exc)
        print(f"models: {detail.rstrip('.')}; nothing changed.", file=sys.stderr)
        return EXIT_REFUSED
    print(
        f"models: serving {describe(after)} (was {describe(before)}); workers follow within "
        f"MODEL_RELOAD_SECONDS ({settings.model_reload_seconds:g} s).",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
