"""``make bench`` / ``python -m bench.run``: our stack against two common designs, in one run.

It starts, on free ports: a private Redis; our stack (one uvicorn process, one Celery
worker process with ``--concurrency 1``); baseline *no-queue* (one uvicorn process that
predicts inside the request); baseline *plain-template* (one Celery task per request,
a blocking ``AsyncResult.get``, one worker process). Load comes from ``wrk`` (see
``bench/wrk.py``), each point after a warm-up, the systems taking turns so that noise from
other work on the machine spreads over all of them. It prints tables, ratios and a
PASS/FAIL list of the targets, and writes everything to ``bench/results/latest.json``.

Parts (``--only``): ``sync`` (1, 32, 256 connections, all three systems), ``async``
(202s/s with ``?async=true``), ``batch`` (``POST /predict/mnist/batch``, 32 files a
request, if the endpoint exists), ``workers`` (400-px JPEGs, 1 vs 2 worker processes),
``replicas`` (a replica joins our Redis; the same worker behind two APIs, one with
``REDIS_MIN_REPLICAS=1``, so every job waits for the replica's ``WAIT``, one without).
Peak RSS is read from every process the run started.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import payloads, wrk
from bench.procs import REPO, Proc, Processes, peak_rss_mb, tree_peak_rss
from bench.report import NO_QUEUE, OURS, PLAIN, evaluate, fmt, sync_table, table, targets_table
from shared.settings import get_settings

PARTS = ("sync", "async", "batch", "workers", "replicas")
CONNECTIONS = (1, 32, 256)
DIGITS = 16
BATCH_FILES = 32
OUR_READY = b"worker ready"  # our worker's JSON log line once it consumes
CELERY_READY = b" ready."  # Celery's own banner line (the plain template keeps it)
NO_WAIT = "no WAIT"
WAIT_1 = "WAIT 1 replica"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    seconds: float
    warmup: float
    parts: tuple[str, ...]
    threads: int
    output: Path
    batch_connections: int
    scaling_connections: int


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per point")
    parser.add_argument("--seconds", type=float, help="seconds per point (default 8)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per point (default 2)")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of: {', '.join(PARTS)}"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1 or 2)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {PARTS}")
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    return Options(seconds, warmup, parts, args.threads, args.output, 8, 32)


# --- set-up --------------------------------------------------------------------------------


def ensure_model(env: dict[str, str]) -> Path:
    """``MODEL_PATH`` if the file exists; otherwise train one there (``TRAIN_LIMIT`` applies)."""
    path = Path(env.get("MODEL_PATH") or get_settings().model_path)
    path = path if path.is_absolute() else REPO / path
    if not path.is_file():
        log(f"no model at {path}; training one (python -m worker.train)")
        subprocess.run(
            [sys.executable, "-m", "worker.train"],
            env={**env, "MODEL_PATH": str(path)},
            cwd=REPO,
            check=True,
        )
    return path


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }


@dataclass
class Bodies:
    digits: Path
    asynchronous: Path
    batch: Path
    large: Path
    digit_files: list[payloads.Digit]
    batch_sample: bytes


def write_bodies(folder: Path) -> Bodies:
    digits = payloads.digit_pngs(DIGITS)
    singles = [payloads.multipart([d]) for d in digits]
    pool = payloads.digit_pngs(BATCH_FILES * 2, offset=DIGITS)
    # 16 different batch bodies: each a window of 32 digits sliding over a pool of 64.
    batches = [
        payloads.multipart([pool[(start * 4 + j) % len(pool)] for j in range(BATCH_FILES)])
        for start in range(DIGITS)
    ]
    large = [payloads.multipart([d]) for d in payloads.photo_jpegs(DIGITS, offset=100)]
    ct = payloads.CONTENT_TYPE
    return Bodies(
        digits=wrk.write_script(folder, "digits", singles, "/predict/mnist", ct),
        asynchronous=wrk.write_script(folder, "async", singles, "/predict/mnist?async=true", ct),
        batch=wrk.write_script(folder, "batch", batches, "/predict/mnist/batch", ct),
        large=wrk.write_script(folder, "large", large, "/predict/mnist", ct),
        digit_files=digits,
        batch_sample=batches[0],
    )


# --- checks --------------------------------------------------------------------------------


def check_answers(name: str, base: str, digits: list[payloads.Digit]) -> dict[str, int]:
    """Each digit once: every answer must be a 200 with a prediction; counts correct ones."""
    correct = 0
    with httpx.Client(base_url=base, timeout=30) as client:
        for digit in digits:
            response = client.post(
                "/predict/mnist",
                content=payloads.multipart([digit]),
                headers={"Content-Type": payloads.CONTENT_TYPE},
            )
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
            correct += response.json()["prediction"] == str(digit.label)
    log(f"{name}: {len(digits)} answers, all 200, {correct} correct")
    return {"answers": len(digits), "correct": correct}


def batch_available(base: str, body: bytes) -> tuple[bool, str]:
    response = httpx.post(
        base + "/predict/mnist/batch",
        content=body,
        headers={"Content-Type": payloads.CONTENT_TYPE},
        timeout=30,
    )
    said = f"POST /predict/mnist/batch answers {response.status_code}"
    if response.status_code in (404, 405):
        return False, f"{said}: not on this branch"
    if response.status_code != 200:
        return False, f"{said}: {response.text[:200]}"
    results = response.json().get("results")
    if not isinstance(results, list) or len(results) != BATCH_FILES:
        return False, f"batch answer has no list of {BATCH_FILES} results: {response.text[:200]}"
    # wrk sees only the HTTP status; each entry's own status is checked here, once.
    failed = [item for item in results if item.get("status_code", 200) != 200]
    if failed:
        return False, f"{len(failed)} of {BATCH_FILES} batch entries failed: {failed[0]}"
    return True, "ok"


def wait_drained(url: str, queues: list[str], timeout: float = 120) -> None:
    """Wait until no task waits in our queues, so a backlog never bleeds into the next point."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.llen(queue) == 0 for queue in queues):
            time.sleep(0.3)  # the last task may still be running
            return
        time.sleep(0.1)
    log(f"queues {queues} still not empty after {timeout:.0f}s")


# --- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options, procs: Processes, folder: Path) -> None:
        self.options = options
        self.procs = procs
        self.folder = folder
        self.results: dict[str, Any] = {"memory": {OURS: {}, NO_QUEUE: {}, PLAIN: {}}}

    def point(self, script: Path, base: str, connections: int, what: str) -> wrk.WrkResult:
        opts = self.options
        if opts.warmup > 0:
            wrk.run(script, base, connections, opts.warmup, threads=opts.threads)
        result = wrk.run(script, base, connections, opts.seconds, threads=opts.threads)
        log(
            f"{what:<34} c={connections:<3} {result.rate():9.1f} ok/s  "
            f"p50 {result.latency_ms['p50']:7.2f} ms  p99 {result.latency_ms['p99']:8.2f} ms  "
            f"non-2xx {result.non_2xx}  socket errors {result.socket_error_total}"
        )
        return result

    def run(self) -> dict[str, Any]:
        opts = self.options
        bodies = write_bodies(self.folder)
        redis_url = self.procs.redis_server()
        our_queue = get_settings().queue_name

        worker = self.procs.celery_worker(
            "ours-worker-c1", "worker.celery_app", 1, OUR_READY, REDIS_URL=redis_url + "/0"
        )
        api, ours = self.procs.uvicorn("ours-api", "api.main:app", REDIS_URL=redis_url + "/0")
        systems = {OURS: ours}
        baseline_procs: dict[str, list[Proc]] = {}
        if "sync" in opts.parts:
            nq_api, systems[NO_QUEUE] = self.procs.uvicorn(
                "noqueue-api", "bench.baselines.no_queue:app"
            )
            plain_env = {"BASELINE_REDIS_URL": redis_url + "/1"}
            plain_worker = self.procs.celery_worker(
                "plain-worker",
                "bench.baselines.plain_template:celery_app",
                1,
                CELERY_READY,
                **plain_env,
            )
            plain_api, systems[PLAIN] = self.procs.uvicorn(
                "plain-api", "bench.baselines.plain_template:app", **plain_env
            )
            baseline_procs = {NO_QUEUE: [nq_api], PLAIN: [plain_api, plain_worker]}
        self.results["answers"] = {
            name: check_answers(name, base, bodies.digit_files) for name, base in systems.items()
        }

        if "sync" in opts.parts:
            sync: dict[str, dict[str, Any]] = {}
            for connections in CONNECTIONS:
                sync[str(connections)] = {}
                # Systems take turns per point, so a noisy neighbour hits all of them alike.
                for name, base in systems.items():
                    result = self.point(bodies.digits, base, connections, f"sync {name}")
                    sync[str(connections)][name] = result.to_dict()
                    wait_drained(redis_url + "/0", [our_queue])
                    wait_drained(redis_url + "/1", ["plain"])
            self.results["sync"] = sync
            for name, group in baseline_procs.items():
                self.results["memory"][name] = {
                    proc.name: tree_peak_rss(proc.pid) for proc in group
                }
                for proc in group:  # idle baselines would only add noise to what follows
                    self.procs.stop(proc)

        if "async" in opts.parts:
            result = self.point(bodies.asynchronous, ours, 32, "async submission (ours)")
            self.results["async"] = {
                **result.to_dict(),
                "accepted_per_s": round(result.rate(202), 1),
                "rejected_503": result.count(503),
            }
            log("async: waiting for the worker to drain the backlog")
            wait_drained(redis_url + "/0", [our_queue], timeout=300)

        if "batch" in opts.parts:
            available, why = batch_available(ours, bodies.batch_sample)
            if available:
                result = self.point(
                    bodies.batch, ours, opts.batch_connections, "batch x32 (ours, 1 worker)"
                )
                self.results["batch"] = {
                    **result.to_dict(),
                    "files_per_request": BATCH_FILES,
                    "images_per_s": round(result.rate(200) * BATCH_FILES, 1),
                }
            else:
                log(f"batch: skipped ({why})")
                self.results["batch"] = {"skipped": why}
            wait_drained(redis_url + "/0", [our_queue])

        if "workers" in opts.parts:
            scaling: dict[str, Any] = {}
            one = self.point(bodies.large, ours, opts.scaling_connections, "400px JPEG, 1 worker")
            scaling["1"] = {**one.to_dict(), "images_per_s": round(one.rate(200), 1)}
            wait_drained(redis_url + "/0", [our_queue])
            self.results["memory"][OURS]["worker-c1"] = tree_peak_rss(worker.pid)
            self.procs.stop(worker)
            worker = self.procs.celery_worker(
                "ours-worker-c2", "worker.celery_app", 2, OUR_READY, REDIS_URL=redis_url + "/0"
            )
            two = self.point(bodies.large, ours, opts.scaling_connections, "400px JPEG, 2 workers")
            scaling["2"] = {**two.to_dict(), "images_per_s": round(two.rate(200), 1)}
            self.results["memory"][OURS]["worker-c2"] = tree_peak_rss(worker.pid)
            self.results["workers"] = {
                "points": scaling,
                "scaling": round(two.rate(200) / one.rate(200), 3) if one.rate(200) else None,
            }
        else:
            self.results["memory"][OURS]["worker-c1"] = tree_peak_rss(worker.pid)
        self.results["memory"][OURS]["api"] = {"main_mb": peak_rss_mb(api.pid)}

        if "replicas" in opts.parts:  # last: the replica it adds stays attached
            self.results["replicas"] = self.replicas(bodies, redis_url, ours)
        return self.results

    def replicas(self, bodies: Bodies, redis_url: str, ours: str) -> dict[str, Any]:
        """The cost of ``REDIS_MIN_REPLICAS=1``: the same Redis, replica and worker, two APIs."""
        master_port = int(redis_url.rsplit(":", 1)[1])
        self.procs.redis_server("redis-replica", replica_of=master_port)
        waiting_api, waiting = self.procs.uvicorn(
            "ours-api-wait", "api.main:app", REDIS_URL=redis_url + "/0", REDIS_MIN_REPLICAS="1"
        )
        apis = {NO_WAIT: ours, WAIT_1: waiting}
        queue = get_settings().queue_name
        points: dict[str, dict[str, Any]] = {}
        for connections in (1, 32):
            for name, base in apis.items():
                result = self.point(bodies.digits, base, connections, f"sync {name}")
                points.setdefault(f"sync c={connections}", {})[name] = result.to_dict()
                wait_drained(redis_url + "/0", [queue])
        for name, base in apis.items():
            result = self.point(bodies.asynchronous, base, 32, f"async {name}")
            points.setdefault("async c=32", {})[name] = {
                **result.to_dict(),
                "accepted_per_s": round(result.rate(202), 1),
            }
            wait_drained(redis_url + "/0", [queue], timeout=300)
        self.procs.stop(waiting_api)
        return points


# --- printing ------------------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    cfg = results["config"]
    out.append(
        f"== MNIST service benchmark ({m['cpus']} CPUs, {m['cpu_model']}, commit {m['commit']}, "
        f"load average at start {m['load_average_at_start']})"
    )
    out.append(
        f"   {cfg['seconds']:g} s per point after {cfg['warmup']:g} s warm-up; wrk "
        f"{cfg['wrk_threads']} thread(s); 16 MNIST test digits as 28x28 PNG, rotating"
    )
    answers = results.get("answers", {})
    if answers:
        out.append(
            "   answer check: "
            + ", ".join(f"{k} {v['correct']}/{v['answers']} correct" for k, v in answers.items())
        )
    if "sync" in results:
        out.append("\n-- Synchronous POST /predict/mnist (ratios: ok/s against the baselines)")
        out.append(sync_table(results["sync"]))
    if "async" in results:
        a = results["async"]
        out.append(
            f"\n-- Async submission (?async=true, 1 API process, 32 conns): "
            f"{fmt(a['accepted_per_s'], 0)} jobs/s accepted (202); 503 back-pressure "
            f"{a['rejected_503']}; other non-2xx {a['non_2xx'] - a['rejected_503']}; "
            f"p50 {fmt(a['latency_ms']['p50'], 2)} ms, p99 {fmt(a['latency_ms']['p99'], 2)} ms"
        )
    if "batch" in results:
        b = results["batch"]
        if "skipped" in b:
            out.append(f"\n-- Batch: skipped ({b['skipped']})")
        else:
            out.append(
                f"\n-- Batch (POST /predict/mnist/batch, {b['files_per_request']} PNGs a request, "
                f"{b['connections']} conns, 1 worker): {fmt(b['images_per_s'], 0)} images/s "
                f"({fmt(b['ok_per_s'])} req/s, p50 {fmt(b['latency_ms']['p50'], 1)} ms, "
                f"p99 {fmt(b['latency_ms']['p99'], 1)} ms, non-2xx {b['non_2xx']}, "
                f"socket errors {sum(b['socket_errors'].values())})"
            )
    if "workers" in results:
        w = results["workers"]
        rows = [
            [
                n,
                fmt(p["images_per_s"]),
                fmt(p["latency_ms"]["p50"], 1),
                fmt(p["latency_ms"]["p99"], 1),
                str(p["non_2xx"]),
                str(sum(p["socket_errors"].values())),
            ]
            for n, p in w["points"].items()
        ]
        out.append("\n-- Worker processes, 400x400 photo-like JPEG uploads, 32 conns")
        out.append(table(["workers", "images/s", "p50 ms", "p99 ms", "non-2xx", "sock err"], rows))
        out.append(f"   2 vs 1: {fmt(w['scaling'], 2, 'x')}")
    if "replicas" in results:
        out.append(
            "\n-- Replication: our API with REDIS_MIN_REPLICAS=1 (WAIT) and without, "
            "one Redis with one replica, the same worker"
        )
        rows = []
        for point, systems in results["replicas"].items():
            base_rate = systems[NO_WAIT].get("accepted_per_s") or systems[NO_WAIT]["ok_per_s"]
            for name, p in systems.items():
                rate = p.get("accepted_per_s") or p["ok_per_s"]
                rows.append(
                    [
                        point,
                        name,
                        fmt(rate),
                        fmt(p["latency_ms"]["p50"], 2),
                        fmt(p["latency_ms"]["p99"], 2),
                        str(p["non_2xx"]),
                        fmt(rate / base_rate if base_rate else None, 2, "x"),
                    ]
                )
        out.append(
            table(["point", "api", "ok/s", "p50 ms", "p99 ms", "non-2xx", "vs no WAIT"], rows)
        )
    mem_rows = []
    for system, processes in results.get("memory", {}).items():
        for name, tree in processes.items():
            kids = tree.get("children_mb") or []
            mem_rows.append(
                [
                    system,
                    name,
                    fmt(tree.get("main_mb")),
                    " + ".join(fmt(k) for k in kids) or "-",
                    fmt(tree.get("total_mb", tree.get("main_mb"))),
                ]
            )
    if mem_rows:
        out.append("\n-- Peak RSS (VmHWM, MB)")
        out.append(table(["system", "process", "main", "children", "total"], mem_rows))
    out.append("\n-- Targets")
    out.append(targets_table(evaluate(results)))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM (e.g. from a CI timeout) unwinds like Ctrl-C: the finally below stops all.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(os.environ)
    env.setdefault("LOG_LEVEL", "INFO")
    env["PYTHONUNBUFFERED"] = "1"
    env["EMBEDDED"] = "false"
    env["MODEL_PATH"] = str(ensure_model(env))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            "seconds": options.seconds,
            "warmup": options.warmup,
            "parts": list(options.parts),
            "wrk_threads": options.threads,
            "connections": list(CONNECTIONS),
            "log_level": env["LOG_LEVEL"],
            "model_path": env["MODEL_PATH"],
        },
    }
    # Bodies, scripts and the processes' logs; kept after the run for a look at the logs.
    folder = options.output.parent / "work"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    procs = Processes(folder, env)
    try:
        results.update(Bench(options, procs, folder).run())
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
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = [t.__dict__ | {"verdict": t.verdict} for t in evaluate(results)]
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nreport written to {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
