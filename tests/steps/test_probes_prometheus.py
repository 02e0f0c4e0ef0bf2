"""`prometheus` checks: an instant PromQL query's one value within bounds, kept in the result;
against a scripted server (every answer shape), and against Debian's real Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.reconcile.baseline import RunRecord
from reconciler.reconcile.requirements import judge
from reconciler.state import State
from reconciler.state.model import CompareSpec
from reconciler.steps import checks
from reconciler.steps.checks import ChecksFacts
from tests.conftest import REPO
from tests.facts.clock import FakeClock

ENSURE = REPO / "deploy" / "engine" / "ensure-prometheus.sh"
PORT = 19390


class Server:
    """A stand-in Prometheus: `/api/v1/query` answers `answers[query]` (status, JSON body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any]] = {}
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                outer.asked.append(f"{url.path}?{query}")
                status, body = outer.answers.get(query, (404, {}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    stand_in = Server()
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()


def vector(*values: str) -> dict[str, Any]:
    """A success answer: an instant vector of one series a value."""
    result = [{"metric": {"job": f"j{i}"}, "value": [1.0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def run(tmp_path: Path, url: str, **spec: Any) -> checks.CheckResult:
    """One `prometheus` check (deadline 5 s on a fake clock) against `url`."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  api:\n    image: a:1\n")
    check = {"name": "reading", "deadline": 5, "prometheus": {"url": url, **spec}}
    state = State.model_validate(
        {"name": "p", "compose": {"file": str(compose)}, "checks": [check]}
    )
    clock = FakeClock(100.0)
    adapter = DockerAdapter(state.compose.file)
    (result,) = checks.run(state, adapter, ChecksFacts(), clock=clock, sleep=clock.sleep)
    return result


def test_a_value_within_bounds_passes_and_is_kept(server: Server, tmp_path: Path) -> None:
    """One series whose value lies within min and max: passes, its value in the result."""
    server.answers["mem"] = (200, vector("4.2e8"))
    result = run(tmp_path, server.url, query="mem", min=1, max=5e8)
    assert result.passed, result.detail
    assert (result.kind, result.value, result.detail) == ("prometheus", 4.2e8, "mem = 4.2e+08")
    assert server.asked == ["/api/v1/query?mem"]


def test_a_value_out_of_bounds_is_retried_then_fails_with_its_reading(
    server: Server, tmp_path: Path
) -> None:
    """A value over `max` is retried until the deadline, then fails saying the value; the last
    reading stays in the result."""
    server.answers["mem"] = (200, vector("7"))
    result = run(tmp_path, server.url, query="mem", max=5)
    assert not result.passed
    assert result.detail == "mem = 7, over the greatest 5 (deadline 5 s)"
    assert result.value == 7.0
    assert len(server.asked) > 1, "retried"


def test_answers_that_can_never_pass_fail_at_once(server: Server, tmp_path: Path) -> None:
    """Several series, a range vector, or a query Prometheus refuses (400): failed at the first
    answer, saying why."""
    server.answers["up"] = (200, vector("1", "0"))
    several = run(tmp_path, server.url, query="up")
    assert not several.passed
    assert several.detail.startswith("up: answers 2 series, not one (")
    assert len(server.asked) == 1
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    server.answers["up[1m]"] = (200, matrix)
    assert run(tmp_path, server.url, query="up[1m]").detail.startswith("up[1m]: answers a matrix")
    refused = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
    server.answers["up{"] = (400, refused)
    assert run(tmp_path, server.url, query="up{").detail == "up{: parse error at char 4"


def test_no_series_or_no_server_is_not_yet(server: Server, tmp_path: Path) -> None:
    """No series yet, or no server answering, is retried until the deadline."""
    server.answers["new"] = (200, vector())
    result = run(tmp_path, server.url, query="new")
    assert result.detail == "new: no series (yet) (deadline 5 s)"
    assert result.value is None
    gone = run(tmp_path, "http://127.0.0.1:1", query="up")
    assert "Connection refused" in gone.detail


def test_a_scalar_answer_is_a_value(server: Server, tmp_path: Path) -> None:
    """A scalar answer (`scalar(...)`, a number) is the value."""
    server.answers["1+1"] = (
        200,
        {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "2"]}},
    )
    assert run(tmp_path, server.url, query="1+1", min=2, max=2).value == 2.0


def test_a_reading_is_compared_with_the_baseline() -> None:
    """`prometheus_increase_pct`: 100 -> 130 is +30%, over a 20% limit; unknown on a side is
    inconclusive."""
    spec = CompareSpec.model_validate({"prometheus_increase_pct": {"reading": 20}})

    def record(value: float | None) -> RunRecord:
        check = {"name": "reading", "passed": True, "kind": "prometheus", "value": value}
        return RunRecord.model_validate({"state": "s", "succeeded": True, "checks": [check]})

    (grew,) = judge(spec, record(100), record(130))
    assert (grew.outcome, grew.detail) == (
        "fail",
        "100 -> 130 (+30.0%, at most +20%; one value a side)",
    )
    (same,) = judge(spec, record(100), record(101))
    assert same.outcome == "pass"
    (unknown,) = judge(spec, record(None), record(101))
    assert unknown.outcome == "inconclusive"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[str]:
    """Debian's Prometheus on 127.0.0.1, scraping itself every second (deploy/engine's
    ensure-prometheus.sh, as root); under CI=true its absence fails the test."""
    done = subprocess.run(
        ["bash", str(ENSURE), "--port", str(PORT)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        message = f"Prometheus needed: {done.stderr.strip()[-800:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield done.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(ENSURE), "--port", str(PORT), "--stop"], check=False)


@pytest.mark.docker
def test_a_real_prometheus_answers_the_checks(prometheus: str, tmp_path: Path) -> None:
    """Against Debian's Prometheus: its own `up` (once scraped) passes `min: 1` with value 1;
    `max: 0` fails naming the value; a query it cannot parse fails at once with its error."""
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  api:\n    image: a:1\n")
    state = State.model_validate(
        {
            "name": "p",
            "compose": {"file": str(compose)},
            "checks": [
                {
                    "name": "scraped",
                    "deadline": 30,
                    "prometheus": {"url": prometheus, "query": 'up{job="prometheus"}', "min": 1},
                },
                {
                    "name": "never",
                    "deadline": 3,
                    "prometheus": {"url": prometheus, "query": 'up{job="prometheus"}', "max": 0},
                },
                {"name": "typo", "deadline": 30, "prometheus": {"url": prometheus, "query": "up{"}},
            ],
        }
    )
    scraped, never, typo = checks.run(state, DockerAdapter(compose), ChecksFacts())
    assert scraped.passed, scraped.detail
    assert scraped.value == 1.0
    assert not never.passed
    assert never.detail.startswith('up{job="prometheus"} = 1, over the greatest 0')
    assert not typo.passed
    assert typo.detail.startswith("up{: ")
    assert "deadline" not in typo.detail, "failed at its first answer, not at its deadline"
