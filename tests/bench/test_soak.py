"""Cheap checks of the soak script's bookkeeping (the soak itself is not a test)."""

from __future__ import annotations

from typing import Any

from bench.soak import evaluate, growth_pct, key_group, parse_args


def _tree(total: float) -> dict[str, Any]:
    return {"main_mb": total, "children_mb": [], "total_mb": total}


def _results(
    *,
    non_2xx: int = 0,
    failed: int = 0,
    api_after: float = 100.0,
    left: int = 0,
    copies_left: int = 0,
) -> dict[str, Any]:
    snapshots = {
        phase: {"api": _tree(100.0), "worker": _tree(400.0)}
        for phase in ("after_warmup", "after_load", "after_settle", "after_expiry")
    }
    snapshots["after_settle"]["api"] = _tree(api_after)
    return {
        "sync": {"requests": 20000, "non_2xx": non_2xx, "socket_errors": {"read": 0}},
        "async": {"jobs": 10, "succeeded": 10 - failed, "errors": failed},
        "rss": snapshots,
        "keys": {
            "after_sync": {"total": 30000, "mnist:job:*": 25000},
            "after_load": {"total": 9000, "mnist:job:*": 5000},
            "after_expiry": {
                "total": 5 + left + (copies_left > 0),
                "mnist:job:*": left,
                "sent entries": copies_left,  # the API's copies of unanswered tasks
            },
            "ttl_audit": {"checked": 29990, "without_ttl": {}, "samples": []},
        },
    }


def test_a_clean_run_passes_every_check() -> None:
    assert all(passed for *_, passed in evaluate(_results(), key_bound=50))


def test_errors_growth_and_leftover_keys_each_fail() -> None:
    def failed(results: dict[str, Any]) -> set[str]:
        return {name for name, _, _, passed in evaluate(results, 50) if not passed}

    assert failed(_results(non_2xx=1)) == {"sync errors"}
    assert failed(_results(failed=1)) == {"async errors"}
    assert failed(_results(api_after=110.0)) == {"api RSS growth"}  # 10% is not < 10%
    assert failed(_results(left=1)) == {"keys after expiry"}
    assert failed(_results(copies_left=1)) == {"keys after expiry"}  # a copy never dropped
    leaky = _results()
    leaky["keys"]["ttl_audit"]["without_ttl"] = {"mnist:attempts:*": 3}
    assert failed(leaky) == {"mnist:* / celery-task-meta-* keys with a TTL"}


def test_keys_are_grouped_by_the_prefixes_the_code_writes() -> None:
    assert key_group("mnist:job:abc", "mnist") == "mnist:job:*"
    assert key_group("celery-task-meta-abc", "mnist") == "celery-task-meta-*"
    assert key_group("_kombu.binding.mnist", "mnist") == "_kombu.*"
    assert key_group("mnist", "mnist") == "queue list"
    assert key_group("mnist:sent", "mnist") == key_group("mnist:sent_at", "mnist") == "sent copies"
    assert key_group("something", "mnist") == "other"
    assert growth_pct(0.0, 5.0) is None
    assert growth_pct(200.0, 210.0) == 5.0


def test_quick_is_small_and_ttl_is_one_the_service_accepts() -> None:
    quick = parse_args(["--quick"])
    assert (quick.sync_requests, quick.async_jobs, quick.ttl) == (2000, 500, 15)
    full = parse_args([])
    assert (full.sync_requests, full.async_jobs, full.connections) == (20000, 5000, 32)
