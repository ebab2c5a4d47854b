"""Turning measurements into tables, ratios and the PASS/FAIL list of the issue's targets.

Everything here works on the plain dicts the harness stores in the JSON report, so a saved
report can be re-rendered and the math is testable without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OURS = "ours"
NO_QUEUE = "no-queue"
PLAIN = "plain-template"
SYSTEMS = (OURS, NO_QUEUE, PLAIN)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )
    return "\n".join(lines)


def errors_of(point: dict[str, Any]) -> int:
    """Failed requests of one wrk run: non-2xx answers plus socket errors."""
    return int(point["non_2xx"]) + sum(int(n) for n in point["socket_errors"].values())


# --- the side-by-side tables ---------------------------------------------------------------


def sync_table(sync: dict[str, dict[str, dict[str, Any]]]) -> str:
    headers = [
        "conns",
        "system",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "non-2xx",
        "503",
        "sock err",
        "vs plain",
        "vs no-queue",
    ]
    rows = []
    for conns, systems in sync.items():
        for name in SYSTEMS:
            point = systems.get(name)
            if point is None:
                continue
            lat = point["latency_ms"]
            rows.append(
                [
                    conns if name == OURS or OURS not in systems else "",
                    name,
                    fmt(point["ok_per_s"]),
                    fmt(lat["p50"], 2),
                    fmt(lat["p90"], 2),
                    fmt(lat["p99"], 2),
                    str(point["non_2xx"]),
                    str(point["statuses"].get("503", 0)),
                    str(sum(point["socket_errors"].values())),
                    fmt(ratio(point["ok_per_s"], _rate(systems, PLAIN)), 2, "x"),
                    fmt(ratio(point["ok_per_s"], _rate(systems, NO_QUEUE)), 2, "x"),
                ]
            )
    return table(headers, rows)


def _rate(systems: dict[str, dict[str, Any]], name: str) -> float | None:
    point = systems.get(name)
    return None if point is None else float(point["ok_per_s"])


# --- targets -------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    wanted: str
    measured: str
    passed: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def evaluate(results: dict[str, Any]) -> list[Target]:
    sync = results.get("sync") or {}
    targets: list[Target] = []

    def add(name: str, wanted: str, measured: str, passed: bool | None) -> None:
        targets.append(Target(name, wanted, measured, passed))

    ours1, plain1 = _get(sync, "1", OURS), _get(sync, "1", PLAIN)
    if ours1 and plain1:
        p50, plain_p50 = ours1["latency_ms"]["p50"], plain1["latency_ms"]["p50"]
        add(
            "1 conn: p50 vs plain template",
            "<= plain p50",
            f"{p50:.2f} vs {plain_p50:.2f} ms",
            p50 <= plain_p50,
        )
    else:
        add("1 conn: p50 vs plain template", "<= plain p50", "n/a", None)
    add(
        "1 conn: p50",
        "<= 2.5 ms",
        fmt(ours1 and ours1["latency_ms"]["p50"], 2, " ms"),
        None if not ours1 else ours1["latency_ms"]["p50"] <= 2.5,
    )

    ours32 = _get(sync, "32", OURS)
    for other, wanted in ((PLAIN, 3.0), (NO_QUEUE, 1.0)):
        r = ratio(_get(ours32 or {}, "ok_per_s"), _get(sync, "32", other, "ok_per_s"))
        add(
            f"32 conns: throughput vs {other}",
            f">= {wanted:.1f}x",
            fmt(r, 2, "x"),
            None if r is None else r >= wanted,
        )
    add(
        "32 conns: p99",
        "<= 50 ms",
        fmt(ours32 and ours32["latency_ms"]["p99"], 2, " ms"),
        None if not ours32 else ours32["latency_ms"]["p99"] <= 50,
    )
    add(
        "32 conns: errors",
        "0",
        "n/a" if not ours32 else str(errors_of(ours32)),
        None if not ours32 else errors_of(ours32) == 0,
    )

    ours256 = _get(sync, "256", OURS)
    if ours256:
        other = sum(n for code, n in ours256["statuses"].items() if code not in ("200", "503"))
        socket = sum(ours256["socket_errors"].values())
        add(
            "256 conns: only 200s and 503s",
            "other=0, socket errors=0",
            f"200={ours256['statuses'].get('200', 0)} 503={ours256['statuses'].get('503', 0)} "
            f"other={other} socket={socket}",
            other == 0 and socket == 0,
        )
    else:
        add("256 conns: only 200s and 503s", "other=0, socket errors=0", "n/a", None)

    rate = _get(results, "async", "accepted_per_s")
    add(
        "async submission",
        ">= 1,500 jobs/s",
        fmt(rate, 0, " jobs/s"),
        None if rate is None else rate >= 1500,
    )
    images = _get(results, "batch", "images_per_s")
    add(
        "batch, 1 worker, 28x28 PNG",
        ">= 3,000 images/s",
        fmt(images, 0, " images/s"),
        None if images is None else images >= 3000,
    )
    scaling = _get(results, "workers", "scaling")
    add(
        "2 vs 1 worker, large uploads",
        ">= 1.6x",
        fmt(scaling, 2, "x"),
        None if scaling is None else scaling >= 1.6,
    )

    api_mb = _get(results, "memory", OURS, "api", "main_mb")
    add(
        "API peak RSS (per process)",
        "<= 150 MB",
        fmt(api_mb, 1, " MB"),
        None if api_mb is None else api_mb <= 150,
    )
    worker_mb = max_worker_tree_mb(results)
    add(
        "worker peak RSS (main + children)",
        "<= 600 MB",
        fmt(worker_mb, 1, " MB"),
        None if worker_mb is None else worker_mb <= 600,
    )
    return targets


def max_worker_tree_mb(results: dict[str, Any]) -> float | None:
    memory = _get(results, "memory", OURS) or {}
    totals = [tree["total_mb"] for key, tree in memory.items() if key.startswith("worker")]
    return max(totals) if totals else None


def targets_table(targets: list[Target]) -> str:
    rows = [[t.verdict, t.name, t.wanted, t.measured] for t in targets]
    return table(["result", "target", "wanted", "measured"], rows)
