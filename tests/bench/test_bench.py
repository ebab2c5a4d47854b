"""Cheap checks of the benchmark harness (the benchmark itself is not a test)."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import payloads, wrk
from bench.report import NO_QUEUE, OURS, PLAIN, evaluate, ratio


def _point(rate: float, p50: float, p99: float, statuses: dict[str, int]) -> dict[str, object]:
    return {
        "ok_per_s": rate,
        "latency_ms": {"p50": p50, "p90": p99, "p99": p99},
        "statuses": statuses,
        "non_2xx": sum(n for code, n in statuses.items() if not code.startswith("2")),
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }


def test_targets_pass_and_fail_on_the_numbers() -> None:
    results = {
        "sync": {
            "1": {OURS: _point(500, 2.0, 4, {"200": 10}), PLAIN: _point(200, 4.0, 8, {"200": 9})},
            "32": {
                OURS: _point(3000, 8, 40, {"200": 10}),
                NO_QUEUE: _point(2000, 9, 60, {"200": 10}),
                PLAIN: _point(1100, 20, 90, {"200": 10}),
            },
            "256": {OURS: _point(3000, 80, 200, {"200": 10, "503": 5, "504": 1})},
        },
        "async": {"accepted_per_s": 1600.0},
        "workers": {"scaling": 1.5},
        "memory": {OURS: {"api": {"main_mb": 90.0}, "worker-c2": {"total_mb": 700.0}}},
    }
    verdicts = {t.name: t.passed for t in evaluate(results)}
    assert verdicts["1 conn: p50 vs plain template"] is True
    assert verdicts["1 conn: p50"] is True
    assert verdicts["32 conns: throughput vs plain-template"] is False  # 2.73x < 3x
    assert verdicts["32 conns: throughput vs no-queue"] is True
    assert verdicts["256 conns: only 200s and 503s"] is False  # the 504
    assert verdicts["async submission"] is True
    assert verdicts["batch, 1 worker, 28x28 PNG"] is None  # not measured: SKIP
    assert verdicts["2 vs 1 worker, large uploads"] is False
    assert verdicts["API peak RSS (per process)"] is True
    assert verdicts["worker peak RSS (main + children)"] is False
    assert ratio(1.0, 0) is None


def test_parse_output_reads_the_done_hook_line() -> None:
    line = (
        '{"duration_us": 2000000, "requests": 10, "bytes": 1, "errors": {"connect": 0, '
        '"read": 1, "write": 0, "status": 2, "timeout": 0}, "latency_us": {"min": 100, '
        '"mean": 1500.0, "max": 9000, "p50": 1000, "p90": 2000, "p99": 8000, "p999": 9000}, '
        '"statuses": {"200": 8, "503": 2}}'
    )
    result = wrk.parse_output("wrk's own text\n" + wrk.RESULT_MARKER + line + "\n", 32)
    assert result.rate() == 4.0
    assert (result.non_2xx, result.count(503), result.socket_error_total) == (2, 2, 1)
    assert result.latency_ms["p99"] == 8.0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[bytes] = []  # noqa: RUF012 - one test server, one list

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Handler.seen.append(body)
        code = 503 if len(_Handler.seen) % 2 else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_generated_lua_sends_every_body_and_counts_statuses(server: str, tmp_path: Path) -> None:
    bodies = [
        payloads.multipart([payloads.Digit(bytes([i]) * 5, i, "image/png", "x.png")])
        for i in range(3)
    ]
    script = wrk.write_script(tmp_path, "t", bodies, "/predict/mnist", payloads.CONTENT_TYPE)
    result = wrk.run(script, server, connections=2, seconds=1, threads=2)
    assert result.requests > 0
    assert result.count(200) + result.count(503) == sum(result.statuses.values())
    assert result.count(503) > 0
    assert set(_Handler.seen) == set(bodies)


def test_model_speed_times_each_model_in_a_checkout_of_its_own(
    small_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import model_speed

    if not (model_speed.REPO / ".venv" / "bin" / "python").is_file():
        pytest.skip("needs the repository's .venv (make builds it) to stand in for a checkout")
    args = [str(small_model_path), str(small_model_path), "--images", "128", "--rounds", "1"]
    assert model_speed.main([*args, "--baseline-checkout", str(model_speed.REPO)]) == 0
    lines = capsys.readouterr().out.splitlines()
    version = model_speed.model_store.load(small_model_path).version
    assert [line.split()[1] for line in lines[1:3]] == [version, version]
    assert "each on its own code (1 rounds, fresh processes)" in lines[3]
