"""Log checks: a service's log lines, read from docker with their timestamps, against regexes.

A line matching `must_not_match` fails the check at once (a logged error cannot be unlogged);
each `must_match` pattern must match some line before the check's deadline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.docker.adapter import DockerAdapter
from reconciler.docker.facts import ContainerFacts
from reconciler.state.model import LogsSpec
from reconciler.steps.probes import Failed, NotYet

__all__ = ["LogLine", "probe", "read_lines", "rfc3339", "service_containers"]

_SHOWN = 300


@dataclass(frozen=True)
class LogLine:
    """One log line: when docker received it, from which container, and its text."""

    timestamp: str
    container: str
    text: str

    def shown(self) -> str:
        text = self.text if len(self.text) <= _SHOWN else self.text[: _SHOWN - 3] + "..."
        return f"{self.timestamp} {self.container}: {text}"


def rfc3339(epoch: float) -> str:
    """`epoch` as docker's `--since` takes it (UTC, nanosecond-free)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def probe(
    spec: LogsSpec,
    adapter: DockerAdapter,
    containers: Sequence[ContainerFacts],
    apply_started: float | None,
) -> str:
    """One read of the service's log and the verdict on it (a detail, `NotYet` or `Failed`)."""
    mine = service_containers(containers, spec.service)
    if not mine:
        raise NotYet(f"service {spec.service} has no container")
    lines = read_lines(adapter, mine, spec.since, apply_started)
    flags = re.IGNORECASE if spec.ignore_case else 0
    for pattern in spec.must_not_match:
        compiled = re.compile(pattern, flags)
        for line in lines:
            if compiled.search(line.text):
                raise Failed(f"log line matches {pattern!r}: {line.shown()}")
    found = []
    for pattern in spec.must_match:
        compiled = re.compile(pattern, flags)
        first = next((line for line in lines if compiled.search(line.text)), None)
        if first is None:
            raise NotYet(
                f"no line of {spec.service}'s log ({len(lines)} lines) matches {pattern!r}"
            )
        found.append(first)
    detail = f"{len(lines)} lines of {spec.service}'s log since {_since_text(spec.since)}"
    if spec.must_not_match:
        detail += f", none matching {len(spec.must_not_match)} forbidden pattern(s)"
    if found:
        detail += f"; found: {found[0].shown()}"
    return detail


def service_containers(containers: Sequence[ContainerFacts], service: str) -> list[ContainerFacts]:
    """The service's own containers (one-off `compose run` containers left out)."""
    return [c for c in containers if c.service == service and not c.oneoff]


def read_lines(
    adapter: DockerAdapter,
    containers: Sequence[ContainerFacts],
    since: str,
    apply_started: float | None,
) -> list[LogLine]:
    """The containers' log lines in timestamp order: since the start of each one's current run
    (its first lines included, none of an earlier run's: `ContainerFacts.log_since`), or since
    the apply began."""
    lines: list[LogLine] = []
    for container in containers:
        moment = container.log_since
        if since == "apply" and apply_started is not None:
            moment = apply_started
        output = adapter.logs_since(container.id, rfc3339(moment) if moment else "0")
        for raw in output.splitlines():
            stamp, _, text = raw.partition(" ")
            if not stamp[:4].isdigit():  # a continuation docker printed without a timestamp
                stamp, text = "", raw
            lines.append(LogLine(stamp, container.name.lstrip("/"), text))
    lines.sort(key=lambda line: line.timestamp)  # stdout and stderr arrive apart
    return lines


def _since_text(since: str) -> str:
    return "this apply began" if since == "apply" else "the container started"
