"""checks step with no engine: JSON matching, the plan's check rows, and runs on a fake clock.

HTTP checks ask a real HTTP server on 127.0.0.1 that answers scripted bodies; exec checks go
through the fake docker CLI replaying the mutfx stack's recorded `compose exec` output.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ImageFacts
from reconciler.plans import Plan, Step
from reconciler.runtime.interrupt import StopToken
from reconciler.state import State, load_state
from reconciler.state.model import HttpRequestSpec
from reconciler.steps import checks
from reconciler.steps.checks import ChecksFacts, matches
from tests.conftest import REPO, Stack, run_cli
from tests.facts import fake_docker
from tests.facts.clock import FakeClock

STACK = Path(fake_docker.__file__).parent / "mutfx_stack"


def recorded_health() -> Any:
    """What the mutfx stack's api answered its exec check (tests/facts/scenarios/converged/)."""
    scenario = fake_docker.SCENARIOS / "converged"
    index = json.loads((scenario / "scenario.json").read_text())
    (call,) = [c for c in index["calls"] if c["argv"].startswith("compose exec -T api wget")]
    return json.loads((scenario / call["stdout"]).read_text())


HEALTHY = recorded_health()


def test_matches_a_subset_of_the_answer() -> None:
    """Every wanted key with an equal value matches, whatever else the answer holds."""
    assert HEALTHY == {"role": "api", "status": "healthy"}
    assert matches(HEALTHY, {"status": "healthy"})
    assert matches(HEALTHY, {})
    assert matches({"data": {"status": "completed", "id": 1}}, {"data": {"status": "completed"}})


def test_matches_rejects_a_different_value() -> None:
    """A wanted value that differs does not match, at the top or nested."""
    assert not matches(HEALTHY, {"status": "unhealthy"})
    assert not matches({"data": {"status": "running"}}, {"data": {"status": "completed"}})
    assert not matches({"success": False}, {"success": True})
    assert not matches([1, 2], [1, 2, 3])


def test_matches_rejects_a_missing_key_or_a_non_mapping() -> None:
    """A missing key, or a list or string where a mapping is wanted, does not match."""
    assert not matches(HEALTHY, {"version": "1"})
    assert not matches(["status", "healthy"], {"status": "healthy"})
    assert not matches("healthy", {"status": "healthy"})


def stack_state() -> State:
    return load_state(STACK / "state.yaml")


def test_plan_lists_each_check_and_size_budget_as_ok_rows() -> None:
    """checks.diff changes nothing and lists every declared check and image budget."""
    plan = checks.diff(stack_state(), ChecksFacts(), Plan())
    assert plan.changes == ()
    assert [(row.step, row.target, row.reason) for row in plan.ok] == [
        (Step.CHECKS, "api answers healthy", "runs after apply converges"),
        (Step.CHECKS, "image size mutfxrb-db:1", "budget 5 MB"),
    ]


Script = dict[str, list[tuple[int, Any]]]


@pytest.fixture
def api() -> Iterator[tuple[str, Script]]:
    """An HTTP server on 127.0.0.1 answering each path with its scripted (status, body) in turn."""
    script: Script = {}

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            answers = script.get(self.path) or [(404, {"detail": "Not Found"})]
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = answer  # http.server calls do_<METHOD>

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def http_state(tmp_path: Path, *checks_spec: dict[str, Any]) -> State:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("services:\n  api:\n    image: mutfxrb-api:1\n")
    return State.model_validate(
        {"name": "mutfxrb", "compose": {"file": str(compose)}, "checks": list(checks_spec)}
    )


def run(state: State, clock: FakeClock) -> list[checks.CheckResult]:
    adapter = DockerAdapter(state.compose.file)
    return list(checks.run(state, adapter, ChecksFacts(), clock=clock, sleep=clock.sleep))


def test_http_check_retries_until_the_json_matches(api: tuple[str, Script], tmp_path: Path) -> None:
    """`starting` twice, then `healthy`: the check passes after two back-off sleeps (0.5, 0.75 s)."""
    url, script = api
    script["/health"] = [(200, {"status": "starting"})] * 2 + [(200, HEALTHY)]
    spec = {
        "name": "health",
        "deadline": 30,
        "http": {"url": f"{url}/health", "expect_json": {"status": "healthy"}},
    }
    clock = FakeClock(500.0)
    (result,) = run(http_state(tmp_path, spec), clock)
    assert result.passed, result.detail
    assert clock.slept == pytest.approx([0.5, 0.75])
    assert result.seconds == pytest.approx(1.25)


def test_http_check_fails_at_its_deadline_when_the_json_never_matches(
    api: tuple[str, Script], tmp_path: Path
) -> None:
    """An answer that never matches fails the check by its deadline, saying what was wanted."""
    url, script = api
    script["/health"] = [(200, {"role": "api", "status": "unhealthy"})]
    spec = {
        "name": "health",
        "deadline": 5,
        "http": {"url": f"{url}/health", "expect_json": {"status": "healthy"}},
    }
    clock = FakeClock(500.0)
    (result,) = run(http_state(tmp_path, spec), clock)
    assert not result.passed
    assert "JSON does not match {'status': 'healthy'}" in result.detail
    assert result.detail.endswith("(deadline 5 s)")
    assert sum(clock.slept) <= 5
    assert clock.slept, "it retried before giving up"


def test_polled_operation_must_reach_its_status(api: tuple[str, Script], tmp_path: Path) -> None:
    """A started operation is polled by its captured id until `completed`; `failed` ends it at once."""
    url, script = api
    script["/start"] = [(200, {"success": True, "operation_id": "op-1"})]
    script["/operations/op-1"] = [
        (200, {"data": {"status": "running"}}),
        (200, {"data": {"status": "completed"}}),
    ]
    script["/operations/op-2"] = [(200, {"data": {"status": "failed"}})]

    def check(name: str, start: str, operation: str) -> dict[str, Any]:
        return {
            "name": name,
            "deadline": 60,
            "http": {
                "method": "POST",
                "url": f"{url}{start}",
                "json": {"strategy_name": "v3_minimal"},
                "expect_json": {"success": True},
                "capture": {"operation_id": "operation_id"},
            },
            "poll": {
                "url": f"{url}/operations/{operation}",
                "until": {"data.status": "completed"},
                "fail_if": {"data.status": ["failed", "cancelled"]},
            },
        }

    script["/start-2"] = [(200, {"success": True, "operation_id": "op-2"})]
    clock = FakeClock(500.0)
    state = http_state(
        tmp_path,
        check("completes", "/start", "{operation_id}"),
        check("fails", "/start-2", "{operation_id}"),
    )
    completes, fails = run(state, clock)
    assert completes.passed, completes.detail
    assert completes.detail.startswith("data.status = 'completed' after polling")
    assert not fails.passed
    assert fails.detail.startswith("data.status = 'failed'")


def test_http_check_rejects_a_non_matching_start_answer(
    api: tuple[str, Script], tmp_path: Path
) -> None:
    """`success: false` from the start request fails the check, without polling anything."""
    url, script = api
    script["/start"] = [(200, {"success": False, "error": "unknown strategy"})]
    spec = {
        "name": "start",
        "deadline": 2,
        "http": {"method": "POST", "url": f"{url}/start", "expect_json": {"success": True}},
    }
    clock = FakeClock(500.0)
    (result,) = run(http_state(tmp_path, spec), clock)
    assert not result.passed
    assert "unknown strategy" in result.detail


def test_exec_check_and_size_budget_on_the_recorded_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's exec check passes on its recorded output; the db image is within 5 MB."""
    fake_docker.on_path("converged", tmp_path, monkeypatch, root=STACK)
    state = stack_state()
    adapter = DockerAdapter(state.compose.file, state.compose.project)
    images = adapter.images(["mutfxrb-api:1", "mutfxrb-db:1"])
    clock = FakeClock(500.0)
    results = checks.run(state, adapter, ChecksFacts(images), clock=clock, sleep=clock.sleep)
    assert [(r.name, r.passed) for r in results] == [
        ("api answers healthy", True),
        ("image size mutfxrb-db:1", True),
    ]
    assert results[0].detail == 'exit 0: {"role": "api", "status": "healthy"}'
    assert clock.slept == []


def test_image_over_its_size_budget_fails() -> None:
    """An image larger than its budget, or missing, fails its size check."""
    state = stack_state()
    big = {"mutfxrb-db:1": ImageFacts("mutfxrb-db:1", "sha256:db", size=6_000_000)}
    (over,) = checks.size_results(state, big)
    assert (over.passed, over.detail) == (False, "6 MB of 5 MB budget")
    (missing,) = checks.size_results(state, {})
    assert (missing.passed, missing.detail) == (False, "image not found")


# No shell anywhere: argv from the state reaches the command as literal arguments.


METACHARACTERS = [
    "$(touch /tmp/pwned-a)",
    "`touch /tmp/pwned-b`",
    ";",
    "touch",
    "/tmp/pwned-c",
    "&&",
    "|",
    ">",
    "/tmp/pwned-d",
]


def test_source_never_starts_a_shell() -> None:
    """No module uses shell=True, os.system or os.popen."""
    for path in (REPO / "reconciler").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", text), path


@pytest.mark.docker
def test_metacharacters_in_state_commands_stay_inert(stack: Stack) -> None:
    """A check whose argv is full of shell syntax echoes it literally; nothing is created."""
    argv = ", ".join(f"'{arg}'" for arg in ["echo", *METACHARACTERS])
    stack.state_file.write_text(
        stack.state_file.read_text()
        + f"checks:\n  - name: inert\n    exec:\n      service: api\n      command: [{argv}]\n"
        + "      expect_output: '$(touch /tmp/pwned-a) `touch /tmp/pwned-b` ; touch /tmp/pwned-c && | > /tmp/pwned-d'\n"
    )
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "check  PASS  inert" in done.stdout
    listing = subprocess.run(
        stack.compose_argv("exec", "-T", "api", "ls", "/tmp"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "pwned" not in listing
    assert not list(Path("/tmp").glob("pwned-*"))


class Counting:
    """An HTTP server on 127.0.0.1 that numbers its requests: a request whose number is in
    `failing` is answered 500, any other 200 (after `delay` s); it notes the most requests it
    held at once, and calls `on_request` with each number."""

    def __init__(self, failing: set[int], delay: float = 0.005) -> None:
        self.failing, self.delay = failing, delay
        self.count = self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.on_request: Any = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer.lock:
                    number = outer.count
                    outer.count += 1
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                if outer.on_request is not None:
                    outer.on_request(number)
                threading.Event().wait(outer.delay)
                status = 500 if number in outer.failing else 200
                data = json.dumps({"status": "healthy" if status == 200 else "error"}).encode()
                # Out of flight before the answer leaves: once the client has it, it may send
                # its next request before this thread runs again, and counting after the write
                # saw 5 in flight from a sample of 4.
                with outer.lock:
                    outer.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counting() -> Iterator[Counting]:
    """A `Counting` server whose requests 10, 20, 30, 40 and 50 fail (number 0 is the check's)."""
    server = Counting({10, 20, 30, 40, 50})
    try:
        yield server
    finally:
        server.close()


def test_a_passed_http_check_samples_its_url(counting: Counting, tmp_path: Path) -> None:
    """`sample: {requests: 50, concurrency: 4}`: after the check passes, 50 more requests with
    at most 4 in flight; each 200's latency is kept and each 500 counts as failed; the check
    still passes, its detail giving the percentiles."""
    spec = {
        "name": "health",
        "http": {"url": counting.url, "sample": {"requests": 50, "concurrency": 4}},
    }
    # The first two sampled requests wait for each other: both are in flight at once whenever
    # the sample sends more than one at a time, however busy the machine (else the barrier
    # times out, and at most one was ever in flight).
    pair = threading.Barrier(2, timeout=10)

    def hold(number: int) -> None:
        if number in (1, 2):
            with contextlib.suppress(threading.BrokenBarrierError):
                pair.wait()

    counting.on_request = hold
    (result,) = run(http_state(tmp_path, spec), FakeClock(500.0))
    assert result.passed, result.detail
    assert not pair.broken, "the first two sampled requests were never in flight together"
    assert counting.count == 51, "the check's own request, then the 50 sampled"
    assert (len(result.latencies), result.errors) == (45, 5)
    assert all(0.004 < latency < 5 for latency in result.latencies), result.latencies
    assert 2 <= counting.most_in_flight <= 4
    assert re.search(
        r"; sampled 50 requests: p50 \d+\.\d ms, p95 \d+\.\d ms, 5 failed$", result.detail
    )


def test_a_failed_http_check_is_not_sampled(counting: Counting, tmp_path: Path) -> None:
    """A check that fails sends no sample: its outcome decides, its latency is not measured."""
    counting.failing = set(range(1000))
    spec = {
        "name": "health",
        "deadline": 1,
        "http": {"url": counting.url, "sample": {"requests": 50}},
    }
    (result,) = run(http_state(tmp_path, spec), FakeClock(500.0))
    assert not result.passed
    assert (result.latencies, result.errors) == ((), 0)
    assert "sampled" not in result.detail


def test_sampling_stops_on_a_stop_request_and_at_its_budget(counting: Counting) -> None:
    """A stop request ends the sample: no request starts after it (each of the 4 senders may
    finish the one it had sent); a spent budget sends nothing."""
    spec = HttpRequestSpec.model_validate(
        {"url": counting.url, "sample": {"requests": 1000, "concurrency": 4}}
    )
    stop = StopToken()
    counting.on_request = lambda number: stop.request() if number == 9 else None
    latencies, errors = checks.sample(spec, counting.url, 60, stop)
    assert 10 <= counting.count <= 10 + 4, counting.count
    assert len(latencies) + errors == counting.count

    counting.on_request = None
    before = counting.count
    assert checks.sample(spec, counting.url, 0, StopToken()) == ([], 0)
    assert counting.count == before
