"""``make soak`` / ``python -m bench.soak``: a long run that looks for leaks, not for speed.

It starts, on free ports, a private Redis, one uvicorn API process and one Celery worker
(our stack, as ``bench/run.py`` does), with a short ``RESULT_TTL_SECONDS`` on both sides.
Then:

1. warm-up: a few seconds of sync load and a few hundred async jobs; the resident set
   (VmRSS) of the API and of the worker (main process plus its prefork children) is read;
2. sync load: ``wrk`` at 32 connections, run again and again until at least
   ``--sync-requests`` answers came back; every status and socket error is counted;
3. async load: ``--async-jobs`` submissions with ``?async=true`` from a concurrent client,
   each job polled until it is ``succeeded`` (or failed, expired or too late);
4. VmRSS again, right after the load and after a short settle;
5. Redis keys by prefix after the sync and after the async load, with a check that every
   ``mnist:*`` and ``celery-task-meta-*`` key has a TTL; then, once the TTL has passed,
   that the keys fell back to a small bound;
6. a summary and PASS/FAIL (0 errors, RSS growth under 10%, keys bounded), the JSON report
   ``bench/results/soak.json``, and a non-zero exit on FAIL.

Every process it starts is stopped however the run ends (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import payloads, wrk
from bench.procs import REPO, Processes, tree_rss
from bench.report import fmt, table
from bench.run import DIGITS, OUR_READY, check_answers, ensure_model, machine, wait_drained
from shared.queue import (
    ATTEMPTS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    SENT_AT_KEY,
    SENT_KEY,
    WORKER_KEY_PREFIX,
    make_celery,
    result_key_prefix,
)
from shared.settings import get_settings

# The result backend's key prefix (celery-task-meta-), as the backend itself names it.
RESULT_KEY_PREFIX = result_key_prefix(make_celery(get_settings()))

RSS_GROWTH_LIMIT_PCT = 10.0
# What may stay in Redis when idle: worker heartbeats, kombu's bindings (_kombu.*), the queue list,
# kombu's unacked bookkeeping. Far below this; job-related keys must all be gone.
DEFAULT_KEY_BOUND = 50
TRANSIENT = (JOB_KEY_PREFIX, ATTEMPTS_KEY_PREFIX, RESULT_KEY_PREFIX)
# Keys our code or Celery's result backend writes; each one must carry a TTL, but for the
# API's copies of the messages it sent (api/recovery.py): two keys that stay, whose entries
# must drain once the tasks are answered.
MUST_EXPIRE = ("mnist:", RESULT_KEY_PREFIX)
SENT_COPIES = (SENT_KEY, SENT_AT_KEY)


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    sync_requests: int
    async_jobs: int
    connections: int
    ttl: int
    warmup: float
    settle: float
    worker_concurrency: int
    key_bound: int
    threads: int
    output: Path


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI run: 2,000 sync, 500 async")
    parser.add_argument("--sync-requests", type=int, help="sync answers to wait for (20000)")
    parser.add_argument("--async-jobs", type=int, help="async jobs to submit and poll (5000)")
    parser.add_argument("--connections", type=int, default=32, help="wrk and client conns")
    parser.add_argument(
        "--ttl", type=int, help="RESULT_TTL_SECONDS for API and worker (30; quick: 15)"
    )
    parser.add_argument("--warmup", type=float, help="seconds of sync warm-up (3; quick: 2)")
    parser.add_argument("--settle", type=float, help="idle seconds before RSS is re-read (10)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="prefork children")
    parser.add_argument("--key-bound", type=int, default=DEFAULT_KEY_BOUND)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1 or 2)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "soak.json")
    args = parser.parse_args(argv)
    quick = args.quick
    ttl = args.ttl if args.ttl is not None else (15 if quick else 30)
    if ttl < 10:
        parser.error("--ttl must be at least 10 (the service refuses shorter)")
    return Options(
        sync_requests=args.sync_requests or (2000 if quick else 20000),
        async_jobs=args.async_jobs if args.async_jobs is not None else (500 if quick else 5000),
        connections=args.connections,
        ttl=ttl,
        warmup=args.warmup if args.warmup is not None else (2.0 if quick else 3.0),
        settle=args.settle if args.settle is not None else (3.0 if quick else 10.0),
        worker_concurrency=args.worker_concurrency,
        key_bound=args.key_bound,
        threads=args.threads,
        output=args.output,
    )


# --- sync load -----------------------------------------------------------------------------


def sync_load(
    script: Path, base: str, total: int, connections: int, threads: int
) -> dict[str, Any]:
    """wrk runs by duration, so run it in chunks sized from the measured rate until
    ``total`` answers came back; sums the counts of every chunk."""
    statuses: Counter[int] = Counter()
    socket_errors: Counter[str] = Counter()
    runs: list[dict[str, Any]] = []
    answered = 0
    elapsed = 0.0
    while answered < total:
        if elapsed > 0 and answered > 0:
            seconds = math.ceil((total - answered) / (answered / elapsed))
        else:
            seconds = 5  # a first probe of the rate
        result = wrk.run(script, base, connections, min(max(seconds, 1), 60), threads=threads)
        statuses.update(result.statuses)
        socket_errors.update(result.socket_errors)
        answered += sum(result.statuses.values())
        elapsed += result.seconds
        runs.append(result.to_dict())
        log(
            f"sync: {answered:,}/{total:,} answers, {result.rate():.0f} ok/s, "
            f"p99 {result.latency_ms['p99']:.1f} ms, non-2xx {result.non_2xx}, "
            f"socket errors {result.socket_error_total}"
        )
        if sum(result.statuses.values()) == 0:
            raise RuntimeError("wrk got no answers at all; is the API up?")
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    return {
        "requests": answered,
        "ok": ok,
        "non_2xx": answered - ok,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "socket_errors": dict(socket_errors),
        "seconds": round(elapsed, 3),
        "ok_per_s": round(ok / elapsed, 1) if elapsed else None,
        "p50_ms_median_of_runs": statistics.median(r["latency_ms"]["p50"] for r in runs),
        "p99_ms_worst_run": max(r["latency_ms"]["p99"] for r in runs),
        "wrk_runs": runs,
    }


def sync_errors(sync: dict[str, Any]) -> int:
    return int(sync["non_2xx"]) + sum(int(n) for n in sync["socket_errors"].values())


# --- async load ----------------------------------------------------------------------------


@dataclass
class AsyncOutcome:
    jobs: int
    submitted: int = 0
    backpressure_503: int = 0  # answered 503 + Retry-After, then retried (by design)
    submit_errors: Counter[str] = field(default_factory=Counter)
    succeeded: int = 0
    failed: int = 0
    expired: int = 0  # 404 while polling: the record vanished before the job was seen done
    unfinished: int = 0
    poll_errors: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    seconds: float = 0.0
    done_after_ms: list[float] = field(default_factory=list)
    failure_samples: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return (
            sum(self.submit_errors.values())
            + self.failed
            + self.expired
            + self.unfinished
            + sum(self.poll_errors.values())
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        lat = sorted(self.done_after_ms)
        data.pop("done_after_ms")
        data["errors"] = self.errors
        data["submitted_per_s"] = round(self.submitted / self.seconds, 1) if self.seconds else None
        data["done_after_ms"] = (
            {
                "p50": round(lat[len(lat) // 2], 1),
                "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                "max": round(lat[-1], 1),
            }
            if lat
            else None
        )
        return data


async def _async_jobs(
    base: str,
    bodies: list[bytes],
    jobs: int,
    connections: int,
    give_up_after: float,
    *,
    pollers: int = 16,
    poll_interval: float = 0.25,
) -> AsyncOutcome:
    out = AsyncOutcome(jobs)
    outstanding = 4 * connections
    # (due time, job id, submitted at); appended in due-time order, so a deque is enough.
    pending: deque[tuple[float, str, float]] = deque()
    numbers = itertools.count()
    submitting = True
    headers = {"Content-Type": payloads.CONTENT_TYPE}
    limits = httpx.Limits(max_connections=connections + pollers)

    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def submit() -> None:
            while (number := next(numbers)) < jobs:
                # Polling must keep up, or records would expire before their job is seen
                # done: a bounded number of jobs waits for its poll.
                while len(pending) >= outstanding:
                    await asyncio.sleep(0.01)
                for _ in range(60):  # back-pressure retries, about a minute at Retry-After 1
                    try:
                        response = await client.post(
                            "/predict/mnist?async=true",
                            content=bodies[number % len(bodies)],
                            headers=headers,
                        )
                    except httpx.HTTPError as exc:
                        out.submit_errors[type(exc).__name__] += 1
                        break
                    if response.status_code == 202:
                        now = time.monotonic()
                        pending.append((now + poll_interval, response.json()["job_id"], now))
                        out.submitted += 1
                        break
                    if response.status_code == 503:
                        out.backpressure_503 += 1
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    out.submit_errors[f"status {response.status_code}"] += 1
                    break
                else:
                    out.submit_errors["503 for a minute"] += 1

        async def poll() -> None:
            while pending or submitting:
                if not pending:
                    await asyncio.sleep(0.02)
                    continue
                due, job_id, submitted_at = pending.popleft()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                out.polls += 1
                try:
                    response = await client.get(f"/jobs/{job_id}")
                except httpx.HTTPError as exc:
                    out.poll_errors[type(exc).__name__] += 1
                    continue
                now = time.monotonic()
                if response.status_code == 404:
                    out.expired += 1
                    continue
                if response.status_code != 200:
                    out.poll_errors[f"status {response.status_code}"] += 1
                    continue
                body = response.json()
                if body["status"] == "succeeded":
                    out.succeeded += 1
                    out.done_after_ms.append((now - submitted_at) * 1000)
                elif body["status"] == "failed":
                    out.failed += 1
                    if len(out.failure_samples) < 5:
                        out.failure_samples.append(json.dumps(body.get("error")))
                elif now - submitted_at > give_up_after:
                    out.unfinished += 1
                else:
                    pending.append((now + poll_interval, job_id, submitted_at))

        started = time.monotonic()
        poll_tasks = [asyncio.create_task(poll()) for _ in range(pollers)]
        await asyncio.gather(*(submit() for _ in range(connections)))
        submitting = False
        await asyncio.gather(*poll_tasks)
        out.seconds = time.monotonic() - started
    return out


def async_load(
    base: str, bodies: list[bytes], jobs: int, connections: int, ttl: int
) -> AsyncOutcome:
    # A job whose record expired cannot be polled any more: give up a little before that.
    outcome = asyncio.run(_async_jobs(base, bodies, jobs, connections, give_up_after=ttl * 0.8))
    log(
        f"async: {outcome.submitted:,}/{jobs:,} submitted, {outcome.succeeded:,} succeeded, "
        f"{outcome.errors} errors, 503 back-pressure {outcome.backpressure_503}, "
        f"{outcome.polls:,} polls in {outcome.seconds:.1f} s"
    )
    return outcome


# --- memory --------------------------------------------------------------------------------


def memory(api_pid: int, worker_pid: int) -> dict[str, Any]:
    return {"api": tree_rss(api_pid), "worker": tree_rss(worker_pid)}


def growth_pct(before: float | None, after: float | None) -> float | None:
    if not before or after is None:
        return None
    return (after - before) / before * 100


# --- Redis keys ----------------------------------------------------------------------------


def key_group(key: str, queue: str) -> str:
    """The family a key belongs to, for counting (prefixes as the code writes them)."""
    for prefix in (*TRANSIENT, WORKER_KEY_PREFIX, "_kombu."):
        if key.startswith(prefix):
            return prefix + "*"
    if key == queue:
        return "queue list"
    if key in SENT_COPIES:
        return "sent copies"
    if key.startswith("unacked"):
        return "unacked*"
    return "other"


def count_keys(client: redis.Redis, queue: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for raw in client.scan_iter(count=1000):
        counts[key_group(raw.decode(errors="replace"), queue)] += 1
    pending = int(client.hlen(SENT_KEY))  # copies of tasks not answered yet
    return {"total": sum(counts.values()), **dict(sorted(counts.items())), "sent entries": pending}


def keys_without_ttl(client: redis.Redis) -> dict[str, Any]:
    """Keys of ours or of the result backend that would never expire (TTL -1)."""
    missing: Counter[str] = Counter()
    samples: list[str] = []
    checked = 0
    for pattern in (prefix + "*" for prefix in MUST_EXPIRE):
        batch: list[bytes] = []
        for raw in itertools.chain(client.scan_iter(match=pattern, count=1000), [None]):
            if raw is not None and raw.decode(errors="replace") not in SENT_COPIES:
                batch.append(raw)
            if batch and (raw is None or len(batch) >= 1000):
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.ttl(key)
                for key, ttl in zip(batch, pipe.execute(), strict=True):
                    checked += 1
                    if ttl == -1:
                        name = key.decode(errors="replace")
                        missing[key_group(name, "")] += 1
                        if len(samples) < 5:
                            samples.append(name)
                batch = []
    return {"checked": checked, "without_ttl": dict(missing), "samples": samples}


def wait_for_expiry(
    client: redis.Redis, queue: str, deadline: float, bound: int
) -> tuple[dict[str, int], float]:
    """Re-count until no job key is left and the total is within ``bound``, or the deadline."""
    started = time.monotonic()
    while True:
        counts = count_keys(client, queue)
        transient = sum(counts.get(prefix + "*", 0) for prefix in TRANSIENT)
        drained = transient == 0 and counts["sent entries"] == 0
        if (drained and counts["total"] <= bound) or time.monotonic() >= deadline:
            return counts, time.monotonic() - started
        time.sleep(2)


# --- the run -------------------------------------------------------------------------------


def run_soak(options: Options, procs: Processes, folder: Path) -> dict[str, Any]:
    queue = get_settings().queue_name
    digits = payloads.digit_pngs(DIGITS)
    bodies = [payloads.multipart([d]) for d in digits]
    script = wrk.write_script(folder, "digits", bodies, "/predict/mnist", payloads.CONTENT_TYPE)

    redis_url = procs.redis_server() + "/0"
    worker = procs.celery_worker(
        "worker", "worker.celery_app", options.worker_concurrency, OUR_READY, REDIS_URL=redis_url
    )
    api, base = procs.uvicorn("api", "api.main:app", REDIS_URL=redis_url)
    client = redis.Redis.from_url(redis_url)
    results: dict[str, Any] = {"answers": check_answers("soak", base, digits)}

    log(f"warm-up: {options.warmup:g} s of sync load, then async jobs")
    wrk.run(script, base, options.connections, options.warmup, threads=options.threads)
    warm_async = async_load(
        base, bodies, max(100, options.async_jobs // 20), options.connections, options.ttl
    )
    wait_drained(redis_url, [queue])
    time.sleep(1)
    rss = {"after_warmup": memory(api.pid, worker.pid)}
    results["warmup"] = {"async": warm_async.to_dict()}

    log(f"sync: at least {options.sync_requests:,} requests at {options.connections} conns")
    results["sync"] = sync_load(
        script, base, options.sync_requests, options.connections, options.threads
    )
    # Counted and audited here too: with a short TTL, the sync jobs' keys are gone by the
    # end of the async phase.
    keys: dict[str, Any] = {"after_sync": count_keys(client, queue)}
    audits = [keys_without_ttl(client)]
    log(f"keys after the sync load: {keys['after_sync']}")
    log(f"async: {options.async_jobs:,} jobs, each polled until done")
    results["async"] = async_load(
        base, bodies, options.async_jobs, options.connections, options.ttl
    ).to_dict()
    last_write = time.monotonic()
    wait_drained(redis_url, [queue])
    rss["after_load"] = memory(api.pid, worker.pid)

    keys["after_load"] = count_keys(client, queue)
    audits.append(keys_without_ttl(client))
    keys["ttl_audit"] = {
        "checked": sum(a["checked"] for a in audits),
        "without_ttl": dict(sum((Counter(a["without_ttl"]) for a in audits), Counter())),
        "samples": [name for a in audits for name in a["samples"]][:5],
    }
    log(f"keys after the load: {keys['after_load']}")

    time.sleep(options.settle)
    rss["after_settle"] = memory(api.pid, worker.pid)

    deadline = last_write + options.ttl + 20
    log(f"waiting for the keys to expire (TTL {options.ttl} s; at most until TTL + 20 s)")
    keys["after_expiry"], waited = wait_for_expiry(client, queue, deadline, options.key_bound)
    keys["seconds_after_load"] = round(time.monotonic() - last_write, 1)
    keys["waited_s"] = round(waited, 1)
    rss["after_expiry"] = memory(api.pid, worker.pid)
    worker.require_alive()
    api.require_alive()
    results["rss"] = rss
    results["keys"] = keys
    return results


# --- verdicts and printing -----------------------------------------------------------------


def evaluate(results: dict[str, Any], key_bound: int) -> list[tuple[str, str, str, bool]]:
    """(check, wanted, measured, passed) for each of the issue's criteria."""
    checks: list[tuple[str, str, str, bool]] = []
    sync = results["sync"]
    errors = sync_errors(sync)
    checks.append(
        ("sync errors", "0", f"{errors} of {sync['requests']:,} (non-2xx + socket)", errors == 0)
    )
    a = results["async"]
    checks.append(
        (
            "async errors",
            "0",
            f"{a['errors']} of {a['jobs']:,} ({a['succeeded']:,} succeeded)",
            a["errors"] == 0 and a["succeeded"] == a["jobs"],
        )
    )
    rss = results["rss"]
    for name in ("api", "worker"):
        before = rss["after_warmup"][name]["total_mb"]
        after = rss["after_settle"][name]["total_mb"]
        pct = growth_pct(before, after)
        checks.append(
            (
                f"{name} RSS growth",
                f"< {RSS_GROWTH_LIMIT_PCT:g}%",
                f"{fmt(before)} -> {fmt(after)} MB ({fmt(pct, 1, '%')})",
                pct is not None and pct < RSS_GROWTH_LIMIT_PCT,
            )
        )
    keys = results["keys"]
    missing = sum(keys["ttl_audit"]["without_ttl"].values())
    checks.append(
        (
            "mnist:* / celery-task-meta-* keys with a TTL",
            "all",
            f"{missing} of {keys['ttl_audit']['checked']:,} without one",
            missing == 0,
        )
    )
    after = keys["after_expiry"]
    transient = sum(after.get(prefix + "*", 0) for prefix in TRANSIENT)
    checks.append(
        (
            "keys after expiry",
            f"<= {key_bound}, no job keys or sent copies",
            f"{after['total']} ({transient} job keys, {after['sent entries']} sent copies), "
            f"{keys['after_sync']['total']:,} before",
            after["total"] <= key_bound and transient == 0 and after["sent entries"] == 0,
        )
    )
    return checks


def _mb_row(label: str, snapshots: dict[str, Any], name: str, part: str) -> list[str]:
    cells = [label]
    for phase in ("after_warmup", "after_load", "after_settle", "after_expiry"):
        tree = snapshots[phase][name]
        if part == "children":
            cells.append(" + ".join(fmt(k) for k in tree["children_mb"]) or "-")
        else:
            cells.append(fmt(tree[part]))
    if part != "children":
        cells.append(
            fmt(
                growth_pct(
                    snapshots["after_warmup"][name][part], snapshots["after_settle"][name][part]
                ),
                1,
                "%",
            )
        )
    else:
        cells.append("")
    return cells


def render(results: dict[str, Any], checks: list[tuple[str, str, str, bool]]) -> str:
    m, cfg = results["machine"], results["config"]
    out = [
        f"== MNIST service soak ({m['cpus']} CPUs, {m['cpu_model']}, commit {m['commit']}, "
        f"load average {m['load_average_at_start']} at start, {m['load_average_at_end']} at end)",
        f"   1 API process, 1 worker (--concurrency {cfg['worker_concurrency']}), "
        f"{cfg['connections']} connections, RESULT_TTL_SECONDS={cfg['ttl']}, "
        f"{results['seconds']:.0f} s in all",
    ]
    s = results["sync"]
    out.append("\n-- Load")
    out.append(
        table(
            ["phase", "requests", "ok", "non-2xx", "socket err", "rate", "latency"],
            [
                [
                    "sync (wrk)",
                    f"{s['requests']:,}",
                    f"{s['ok']:,}",
                    str(s["non_2xx"]),
                    str(sum(s["socket_errors"].values())),
                    f"{fmt(s['ok_per_s'])} ok/s",
                    f"p50 {fmt(s['p50_ms_median_of_runs'], 1)} ms, "
                    f"p99 {fmt(s['p99_ms_worst_run'], 1)} ms (worst run)",
                ],
                _async_row(results["async"]),
            ],
        )
    )
    rss = results["rss"]
    out.append("\n-- VmRSS, MB (growth: after settle vs after warm-up)")
    out.append(
        table(
            ["process", "warm-up", "load", "settle", "expiry", "growth"],
            [
                _mb_row("api", rss, "api", "total_mb"),
                _mb_row("worker main", rss, "worker", "main_mb"),
                _mb_row("worker children", rss, "worker", "children"),
                _mb_row("worker total", rss, "worker", "total_mb"),
            ],
        )
    )
    keys = results["keys"]
    phases = ("after_sync", "after_load", "after_expiry")
    groups = sorted(set().union(*(keys[phase] for phase in phases)) - {"total"})
    out.append(
        "\n-- Redis keys (db 0): after the sync load, after the async load, and "
        f"{keys['seconds_after_load']:.0f} s after that"
    )
    out.append(
        table(
            ["keys", "after sync", "after async", "after expiry"],
            [[g, *(f"{keys[phase].get(g, 0):,}" for phase in phases)] for g in [*groups, "total"]],
        )
    )
    audit = keys["ttl_audit"]
    if audit["without_ttl"]:
        out.append(f"   without a TTL: {audit['without_ttl']} e.g. {audit['samples']}")
    out.append("\n-- Checks")
    out.append(
        table(
            ["check", "wanted", "measured", "verdict"],
            [[name, wanted, got, "PASS" if ok else "FAIL"] for name, wanted, got, ok in checks],
        )
    )
    out.append("\nPASS" if all(ok for *_, ok in checks) else "\nFAIL")
    return "\n".join(out)


def _async_row(a: dict[str, Any]) -> list[str]:
    done = a["done_after_ms"] or {}
    return [
        "async (jobs)",
        f"{a['submitted']:,} of {a['jobs']:,}",
        f"{a['succeeded']:,} succeeded",
        f"{a['failed']} failed, {a['expired']} expired, {a['unfinished']} late",
        str(sum(a["submit_errors"].values()) + sum(a["poll_errors"].values())),
        f"{fmt(a['submitted_per_s'])} jobs/s; {a['backpressure_503']} 503 retried",
        f"seen done after p50 {fmt(done.get('p50'), 0)} ms, max {fmt(done.get('max'), 0)} ms",
    ]


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C: the finally below stops everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(os.environ)
    env.setdefault("LOG_LEVEL", "INFO")
    env["PYTHONUNBUFFERED"] = "1"
    env["EMBEDDED"] = "false"
    env["RESULT_TTL_SECONDS"] = str(options.ttl)  # read by both the API and the worker
    env["MODEL_PATH"] = str(ensure_model(env))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "sync_requests": options.sync_requests,
            "async_jobs": options.async_jobs,
            "connections": options.connections,
            "ttl": options.ttl,
            "warmup": options.warmup,
            "settle": options.settle,
            "worker_concurrency": options.worker_concurrency,
            "key_bound": options.key_bound,
            "model_path": env["MODEL_PATH"],
        },
    }
    # Its own folder, so a soak and a bench never clobber each other's logs.
    folder = options.output.parent / "soak-work"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    procs = Processes(folder, env)
    started = time.monotonic()
    try:
        results.update(run_soak(options, procs, folder))
    except KeyboardInterrupt:
        log("interrupted; stopping every process this run started")
        return 130
    except BaseException:
        log(f"run failed; process logs are in {folder}")
        for proc in procs.started:
            print(f"--- {proc.name} ---\n{proc.tail(1500)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    checks = evaluate(results, options.key_bound)
    results["checks"] = [
        {"check": name, "wanted": wanted, "measured": got, "passed": ok}
        for name, wanted, got, ok in checks
    ]
    passed = all(ok for *_, ok in checks)
    results["passed"] = passed
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results, checks))
    print(f"\nreport written to {options.output}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
