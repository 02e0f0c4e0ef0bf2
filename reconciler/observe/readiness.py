"""When each container became ready: the moment the services wait saw it, kept in the record
store, so that a result (`apply --save-result`, a verdict against a baseline) knows each
service's time from its container's start to ready, even on an apply that changed nothing.

The moment is the end of the first passing healthcheck of the container's current passing
streak, read from docker's health log (which keeps the last five runs), when the log still
shows where the streak began: after a failed run, or from the first run of the container's
start. Otherwise it is the wait's own sample that first saw the container ready, when the wait
saw it not ready before (so the moment is within a sample of the truth); a container that was
ready before the wait began and whose log no longer shows when is left as recorded earlier.

A healthcheck looks once an interval (docker's default: 30 s), so each moment comes with the
last moment the container was seen not ready: the failed run's start, the container's start
when its first run passed, or the wait's previous look. It became ready in between; the verdict
calls a service slower to be ready only when it is slower even at the window's start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from reconciler.docker.facts import ContainerFacts, docker_epoch
from reconciler.runtime import records
from reconciler.runtime.records import ReadinessRecord, ReadyEntry

__all__ = [
    "HEALTH_LOG_SIZE",
    "ReadinessRecords",
    "logged_ready_moment",
    "ready_after_seconds",
    "ready_seconds",
]

HEALTH_LOG_SIZE = 5  # the healthcheck runs docker keeps in a container's health log


def logged_ready_moment(container: ContainerFacts) -> ReadyEntry | None:
    """When the container became healthy in its current run (epoch s), if its health log still
    shows it: the end of the first run of its current passing streak, that streak preceded in
    the log by a failed run (its start is `ready_after`), or starting at the first run since
    the container started (the start is `ready_after`)."""
    started = container.started_epoch
    if started is None:
        return None
    probes = [p for p in container.health_log if (docker_epoch(p.start) or 0.0) >= started]
    first = None
    for index in range(len(probes) - 1, -1, -1):
        if probes[index].exit_code != 0:
            break
        first = index
    if first is None:
        return None
    whole = len(container.health_log) < HEALTH_LOG_SIZE  # no run has been dropped yet
    end = docker_epoch(probes[first].end)
    if end is None or not (first > 0 or whole):
        return None
    after = docker_epoch(probes[first - 1].start) if first > 0 else started
    return ReadyEntry(started_at=container.started_at, ready_at=end, ready_after=after)


def ready_seconds(
    containers: Iterable[ContainerFacts], moments: Mapping[str, ReadyEntry]
) -> float | None:
    """A service's time to ready: the longest of its containers' (None when any is unknown)."""
    return _longest(containers, moments, lambda entry: entry.ready_at)


def ready_after_seconds(
    containers: Iterable[ContainerFacts], moments: Mapping[str, ReadyEntry]
) -> float | None:
    """The earliest a service can have been ready, from its containers' starts: the longest of
    their `ready_after` (None when any is unknown)."""
    return _longest(containers, moments, lambda entry: entry.ready_after)


def _longest(
    containers: Iterable[ContainerFacts],
    moments: Mapping[str, ReadyEntry],
    moment: Callable[[ReadyEntry], float | None],
) -> float | None:
    times = []
    for container in containers:
        entry = moments.get(container.id)
        started = container.started_epoch
        if entry is None or started is None or entry.started_at != container.started_at:
            return None
        at = moment(entry)
        if at is None:
            return None
        times.append(max(0.0, at - started))
    return round(max(times), 3) if times else None


class ReadinessRecords:
    """A project's readiness record: container ID -> its run and when that run became ready."""

    def __init__(self, project: str, directory: Path | None = None) -> None:
        self.path = (directory or records.directory()) / project / "readiness.json"

    def read(self) -> dict[str, ReadyEntry]:
        """The recorded moments; empty when there are none or the record is unusable (warned)."""
        record = records.load(self.path, ReadinessRecord)
        return dict(record.containers) if record is not None else {}

    def update(self, seen: Mapping[str, ReadyEntry], present: Iterable[str]) -> bool:
        """Record the moments `seen`, keep earlier ones of the containers `present`, drop the
        rest (containers gone); whether written (a failure only warns)."""
        keep = set(present)
        merged = {cid: entry for cid, entry in self.read().items() if cid in keep}
        merged.update(seen)
        if not merged and not self.path.exists():
            return False
        return records.save(
            self.path, ReadinessRecord(version=1, containers=dict(sorted(merged.items())))
        )
