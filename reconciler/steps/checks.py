"""checks step: the state's functional checks, run after the environment converged.

Each check is retried until it passes or its deadline passes: an HTTP request whose status and
JSON must match (optionally followed by polling a URL until a field reaches a value), a
command run in a service whose exit code and output must match, or a service's log read
against patterns (`probes.logs`). A host command (`probes.command`, the team's own test
script) runs once, bounded by its timeout; the cases of the JUnit file it writes become rows
of the result. Image size budgets are checked too. Checks change no docker object; their
results feed the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ComposeConfig, ContainerFacts, ImageFacts
from reconciler.errors import DockerError
from reconciler.logs import ProgressEvent, get_logger
from reconciler.observe.facts import Snapshot
from reconciler.plans import InSync, Plan, Step
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.poll import Poll
from reconciler.secrets.redact import Secrets
from reconciler.state import State
from reconciler.state.model import CheckSpec, ExecSpec, HttpRequestSpec, PollSpec
from reconciler.stats import percentile
from reconciler.steps.contract import (
    CaseResult,
    CheckResult,
    StepDefinition,
    VerifyContext,
)
from reconciler.steps.probes import ENGINE_HOST, Failed, NotYet, prometheus
from reconciler.steps.probes import command as host_command
from reconciler.steps.probes import logs as service_logs

__all__ = [
    "STEP",
    "CaseResult",
    "CheckResult",
    "ChecksFacts",
    "diff",
    "fingerprint",
    "matches",
    "observe",
    "run",
    "sample",
    "size_results",
    "verify",
]

_log = get_logger(__name__)
_MB = 1_000_000
_LOG_TAIL = 20


@dataclass(frozen=True)
class ChecksFacts:
    """The checks step's facts: the images whose size budgets it measures, the containers whose
    logs it reads, and compose's model (the URLs a host command is given)."""

    images: dict[str, ImageFacts] = field(default_factory=dict)
    containers: tuple[ContainerFacts, ...] = ()
    config: ComposeConfig | None = None


def observe(state: State, snapshot: Snapshot, adapter: DockerAdapter) -> ChecksFacts:
    """The images, containers and compose model the checks read (no read of its own)."""
    return ChecksFacts(snapshot.images, snapshot.containers, snapshot.config)


def diff(state: State, facts: ChecksFacts, earlier: Plan) -> Plan:
    """Checks are not drift: a plan lists them as what apply will verify."""
    rows = [InSync(Step.CHECKS, check.name, "runs after apply converges") for check in state.checks]
    rows += [
        InSync(Step.CHECKS, f"image size {ref}", f"budget {spec.size_budget_mb:g} MB")
        for ref, spec in state.images.items()
        if spec.size_budget_mb is not None
    ]
    return Plan((), tuple(rows))


def fingerprint(state: State, facts: ChecksFacts, secrets: Secrets) -> dict[str, object]:
    """By image reference: the ID and size its size budget is measured on."""
    return {ref: {"id": image.id, "size": image.size} for ref, image in facts.images.items()}


def verify(
    state: State, facts: ChecksFacts, adapter: DockerAdapter, context: VerifyContext
) -> tuple[CheckResult, ...]:
    """The verify phase (`steps.contract`): every check, once the environment converged."""
    return run(
        state,
        adapter,
        facts,
        apply_started=context.apply_started,
        secrets=context.secrets,
        quiet=context.quiet,
    )


def run(
    state: State,
    adapter: DockerAdapter,
    facts: ChecksFacts,
    *,
    apply_started: float | None = None,
    secrets: Secrets | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    quiet: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> tuple[CheckResult, ...]:
    """Run every declared check, each until it passes or its deadline passes.

    No attempt starts after a check's deadline, and each attempt is bounded by the time left.
    A stop request ends the checks at once (`StopRequested`). `apply_started` (epoch s) is
    where `logs: {since: apply}` reads from; `secrets` are masked in every detail; `quiet`
    is held around each latency sample (the run's resource sampling holds off meanwhile).
    """
    sleep = sleep or adapter.stop.sleep
    results = []
    probe = _Probe(state, adapter, facts, apply_started, quiet)
    for check in state.checks:
        adapter.stop.check(f"check {check.name}")
        result = _with_log_tail(_run_one(check, probe, clock, sleep), probe)
        results.append(_logged(_redacted(result, secrets)))
    results += [_logged(result) for result in size_results(state, facts.images)]
    return tuple(results)


def _logged(result: CheckResult) -> CheckResult:
    """Log a result as it lands (the CLI's live view shows it then)."""
    log = _log.info if result.passed else _log.error
    log(
        ProgressEvent.CHECK,
        name=result.name,
        passed=result.passed,
        detail=result.detail,
        kind=result.kind,
    )
    return result


def _with_log_tail(result: CheckResult, probe: _Probe) -> CheckResult:
    """A failed check about a service carries that service's last log lines."""
    if result.passed or result.service is None:
        return result
    mine = service_logs.service_containers(probe.facts.containers, result.service)
    if not mine:
        return result
    container = mine[0]
    try:
        tail = probe.adapter.container_logs(container.id, _LOG_TAIL)
    except DockerError as error:
        tail = f"(log not readable: {error})"
    return dataclasses.replace(result, log_tail=tail)


def _redacted(result: CheckResult, secrets: Secrets | None) -> CheckResult:
    if secrets is None:
        return result
    cases = tuple(
        dataclasses.replace(case, detail=secrets.redact(case.detail)) for case in result.cases
    )
    return dataclasses.replace(
        result,
        detail=secrets.redact(result.detail),
        cases=cases,
        log_tail=secrets.redact(result.log_tail),
    )


@dataclass(frozen=True)
class _Probe:
    """What one check attempt needs besides its spec."""

    state: State
    adapter: DockerAdapter
    facts: ChecksFacts
    apply_started: float | None
    quiet: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext


def size_results(state: State, images: Mapping[str, ImageFacts]) -> list[CheckResult]:
    """Each image with a size budget, against it."""
    results = []
    for reference, spec in state.images.items():
        if spec.size_budget_mb is None:
            continue
        image = images.get(reference)
        if image is None:
            results.append(
                CheckResult(f"image size {reference}", False, "image not found", 0.0, "size")
            )
            continue
        size = image.size / _MB
        passed = size <= spec.size_budget_mb
        detail = f"{size:.0f} MB of {spec.size_budget_mb:g} MB budget"
        results.append(CheckResult(f"image size {reference}", passed, detail, 0.0, "size"))
    return results


def _kind(check: CheckSpec, config: ComposeConfig | None) -> tuple[str, str | None]:
    """The check's kind, and the service it is about (for HTTP: the one publishing the port)."""
    if check.exec is not None:
        return "exec", check.exec.service
    if check.logs is not None:
        return "logs", check.logs.service
    if check.command is not None:
        return "command", None
    if check.prometheus is not None:
        return "prometheus", None
    assert check.http is not None
    port = urllib.parse.urlsplit(check.http.url).port
    services = config.services.values() if config is not None else ()
    owner = next((s.name for s in services if any(p.published == port for p in s.ports)), None)
    return "http", owner


def _run_one(
    check: CheckSpec,
    probe: _Probe,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> CheckResult:
    started = clock()
    kind, service = _kind(check, probe.facts.config)
    if check.command is not None:
        return _command(check, probe, kind, clock)
    poll = Poll(
        check.deadline, delay=0.5, factor=1.5, most=3.0, clock=clock, sleep=sleep, started=started
    )
    detail = "not attempted"
    value: float | None = None  # a Prometheus check's last reading
    while True:
        try:
            detail, value = _attempt(check, probe, poll.deadline, clock, sleep)
            passed = CheckResult(check.name, True, detail, clock() - started, kind, service)
            return _sampled(dataclasses.replace(passed, value=value), check, probe, clock)
        except Failed as failure:
            failed = CheckResult(check.name, False, str(failure), clock() - started, kind, service)
            return dataclasses.replace(failed, value=value)
        except (NotYet, DockerError) as attempt:
            detail = str(attempt)
            value = attempt.value if isinstance(attempt, prometheus.Reading) else value
        if not poll.room():  # the next attempt would start after the deadline
            detail = f"{detail} (deadline {check.deadline:g} s)"
            failed = CheckResult(check.name, False, detail, clock() - started, kind, service)
            return dataclasses.replace(failed, value=value)
        poll.wait()


def _attempt(
    check: CheckSpec,
    probe: _Probe,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> tuple[str, float | None]:
    """One attempt of a retried check: its detail (and a Prometheus check's value) when it
    passes, else `NotYet`/`Failed`."""
    if check.exec is not None:
        return _exec(check.exec, probe.adapter, deadline - clock()), None
    if check.logs is not None:
        found = service_logs.probe(
            check.logs, probe.adapter, probe.facts.containers, probe.apply_started
        )
        return found, None
    if check.prometheus is not None:
        return prometheus.probe(check.prometheus, probe.adapter.engine_host, deadline - clock())
    assert check.http is not None, "validated: a check has exactly one kind"
    answer = _http(
        check.http, check.poll, deadline, clock, sleep, engine_host=probe.adapter.engine_host
    )
    return answer, None


def _sampled(
    result: CheckResult, check: CheckSpec, probe: _Probe, clock: Callable[[], float]
) -> CheckResult:
    """A passed HTTP check with `sample`: its URL's latency sampled, within the check's
    deadline again (from now); the check's outcome stays as it was."""
    if check.http is None or check.http.sample is None:
        return result
    spec = check.http
    url = spec.url.replace(ENGINE_HOST, probe.adapter.engine_host)
    with probe.quiet():
        latencies, errors = sample(spec, url, check.deadline, probe.adapter.stop, clock)
    probe.adapter.stop.check(f"check {check.name}")
    sent = len(latencies) + errors
    detail = f"{result.detail}; sampled {sent} requests"
    if latencies:
        detail += (
            f": p50 {percentile(latencies, 50) * 1000:.1f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.1f} ms"
        )
    detail += f", {errors} failed"
    return dataclasses.replace(result, detail=detail, latencies=tuple(latencies), errors=errors)


def sample(
    spec: HttpRequestSpec,
    url: str,
    budget: float,
    stop: StopToken,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[float], int]:
    """Send `spec.sample.requests` requests (its method and body) to `url`, at most
    `spec.sample.concurrency` in flight, within `budget` seconds: the latency (s) of each one
    answered with the wanted status, and how many failed. Requests not sent by the budget's
    end, or once a stop is asked for, are not sent."""
    assert spec.sample is not None
    deadline = clock() + budget
    remaining = spec.sample.requests
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0

    def send() -> None:
        nonlocal remaining, errors
        while True:
            with lock:
                if remaining <= 0 or stop.requested or clock() >= deadline:
                    return
                remaining -= 1
            started = time.perf_counter()
            try:
                status, _ = _send(spec.method, url, spec.json_body, min(deadline - clock(), 10.0))
            except NotYet:
                status = None
            elapsed = time.perf_counter() - started
            with lock:
                if status is None or spec.expect_status not in (None, status):
                    errors += 1
                else:
                    latencies.append(elapsed)

    workers = [
        threading.Thread(target=send, name=f"sample-{i}", daemon=True)
        for i in range(min(spec.sample.concurrency, spec.sample.requests))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, errors


def _command(check: CheckSpec, probe: _Probe, kind: str, clock: Callable[[], float]) -> CheckResult:
    """A host command: one run, bounded by its timeout (the check's deadline by default)."""
    assert check.command is not None
    started = clock()
    spec = check.command
    env = host_command.environment(
        spec, probe.facts.config, probe.state.source, probe.adapter.engine_host
    )
    timeout = spec.timeout or check.deadline
    try:
        outcome = host_command.run(spec, env, timeout, probe.adapter.stop)
    except Failed as failure:
        return CheckResult(check.name, False, str(failure), clock() - started, kind)
    return CheckResult(
        check.name, outcome.passed, outcome.detail, clock() - started, kind, None, outcome.cases
    )


def _exec(spec: ExecSpec, adapter: DockerAdapter, left: float) -> str:
    # One attempt, bounded by the time left: the check's own loop retries, on its deadline.
    result = adapter.exec(
        spec.service, spec.command, mutating=False, timeout=max(left, 0.1), retry=False
    )
    wanted = spec.expect_exit
    exit_ok = result.exit_code != 0 if wanted == "nonzero" else result.exit_code == wanted
    last = result.output.strip().splitlines()[-1:] or [""]
    if not exit_ok:
        raise NotYet(f"exit {result.exit_code}, wanted {wanted}: {last[0][:200]}")
    if spec.expect_output is not None and spec.expect_output not in result.output:
        raise NotYet(f"output lacks {spec.expect_output!r}: {last[0][:200]}")
    return f"exit {result.exit_code}" + (f": {last[0][:120]}" if last[0] else "")


def _http(
    spec: HttpRequestSpec,
    poll: PollSpec | None,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    *,
    engine_host: str = "127.0.0.1",
) -> str:
    """`{engine_host}` in the URLs is the target engine's host name (127.0.0.1 when local)."""
    url = spec.url.replace(ENGINE_HOST, engine_host)
    status, body = _request(spec.method, url, spec.json_body, deadline - clock())
    if spec.expect_status is not None and status != spec.expect_status:
        raise NotYet(f"HTTP {status}, wanted {spec.expect_status}: {_short(body)}")
    if spec.expect_json is not None and not matches(body, spec.expect_json):
        raise NotYet(f"JSON does not match {spec.expect_json}: {_short(body)}")
    if spec.expect_items is not None:
        _check_items(body, spec.expect_items.min, spec.expect_items.having)
    captured = {name: _path(body, path) for name, path in spec.capture.items()}
    if poll is None:
        return f"HTTP {status}: {_short(body, 120)}"
    return _poll(poll, {**captured, "engine_host": engine_host}, deadline, clock, sleep)


def _poll(
    poll: PollSpec,
    captured: dict[str, Any],
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str:
    url = poll.url.format(**{key: str(value) for key, value in captured.items()})
    waiting = Poll.until(deadline, delay=0.25, factor=1.5, most=2.0, clock=clock, sleep=sleep)
    body: Any = None
    while not waiting.expired():
        _, body = _request("GET", url, None, waiting.left())
        for path, bad in poll.fail_if.items():
            if _path(body, path) in bad:
                raise Failed(f"{path} = {_path(body, path)!r}: {_short(body)}")
        if all(_path(body, path) == want for path, want in poll.until.items()):
            shown = ", ".join(f"{path} = {want!r}" for path, want in poll.until.items())
            return f"{shown} after polling {url}"
        if not waiting.room():
            break
        waiting.wait()
    raise Failed(f"{url} never reached {poll.until}: last {_short(body)}")


def _check_items(body: Any, minimum: int, having: list[dict[str, object]]) -> None:
    if not isinstance(body, list):
        raise NotYet(f"expected a JSON list: {_short(body)}")
    if len(body) < minimum:
        raise NotYet(f"{len(body)} items, wanted at least {minimum}: {_short(body)}")
    for wanted in having:
        if not any(matches(item, wanted) for item in body):
            raise NotYet(f"no item matches {wanted}: {_short(body)}")


def matches(actual: Any, wanted: Any) -> bool:
    """True when `wanted` is a subset of `actual` (mappings recursively, other values equal)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(actual[key], value) for key, value in wanted.items()
        )
    return bool(actual == wanted)


def _path(body: Any, dotted: str) -> Any:
    node = body
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _request(
    method: str, url: str, body: Mapping[str, object] | None, left: float
) -> tuple[int, Any]:
    """One HTTP request, bounded by the time left (at most 10 s): its status and JSON body."""
    status, raw = _send(method, url, body, left)
    return status, _json(raw)


def _send(
    method: str, url: str, body: Mapping[str, object] | None, left: float
) -> tuple[int, bytes]:
    """One HTTP request, bounded by the time left (at most 10 s): its status and body's bytes.
    No answer (refused, timed out, the deadline reached) is `NotYet`."""
    if left <= 0:
        raise NotYet(f"{method} {url}: deadline reached")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - URL scheme validated by the state model
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=min(left, 10.0)) as response:  # noqa: S310 - as above
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise NotYet(f"{method} {url}: {getattr(error, 'reason', error)}") from error


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _short(body: Any, limit: int = 200) -> str:
    text = json.dumps(body) if not isinstance(body, str) else body
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Checks plan no change (no `apply`): they are this step's verify phase, run after the
# environment converged.
STEP = StepDefinition(
    step=Step.CHECKS, observe=observe, diff=diff, fingerprint=fingerprint, apply=None, verify=verify
)
