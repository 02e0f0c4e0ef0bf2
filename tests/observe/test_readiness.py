"""When containers became ready: read from docker's health log where it still shows it, the
record the services wait keeps, and a service's time to ready from it."""

from __future__ import annotations

from pathlib import Path

from reconciler.docker.facts import ContainerFacts, HealthProbe, docker_epoch
from reconciler.observe.readiness import (
    ReadinessRecords,
    logged_ready_moment,
    ready_after_seconds,
    ready_seconds,
)
from reconciler.runtime.records import ReadyEntry

STARTED = "2026-12-07T12:00:00.000000Z"


def at(seconds: float) -> str:
    """STARTED plus `seconds`, as docker writes times."""
    whole, fraction = divmod(seconds, 1)
    return f"2026-12-07T12:00:{int(whole):02d}.{round(fraction * 1e6):06d}Z"


def probe(start: float, exit_code: int) -> HealthProbe:
    """A healthcheck run that took 0.1 s."""
    return HealthProbe(at(start), at(start + 0.1), exit_code)


def container(*probes: HealthProbe, cid: str = "c1", started: str = STARTED) -> ContainerFacts:
    return ContainerFacts(
        cid,
        "api-1",
        "api",
        "running",
        "healthy",
        0,
        "h",
        "i",
        started_at=started,
        health_log=probes,
    )


def window(facts: ContainerFacts) -> tuple[float | None, float] | None:
    """The logged moment's window, in seconds after STARTED: (not ready at, ready at)."""
    entry = logged_ready_moment(facts)
    started = docker_epoch(STARTED)
    assert started is not None
    if entry is None:
        return None
    assert entry.started_at == facts.started_at
    after = None if entry.ready_after is None else round(entry.ready_after - started, 3)
    return after, round(entry.ready_at - started, 3)


def test_the_end_of_the_first_pass_after_a_failure_is_the_ready_moment() -> None:
    """Failing runs, then passing ones: ready when the first passing run ended, and not before
    the last failed run started (the check looks once an interval)."""
    facts = container(probe(1, 1), probe(2, 1), probe(3, 0), probe(4, 0), probe(5, 0))
    assert window(facts) == (2.0, 3.1)


def test_a_whole_log_that_passed_from_its_first_run_is_ready_at_that_run() -> None:
    """Fewer than five runs, all passing: none was dropped, so the first one made it ready, at
    any time since the container started."""
    facts = container(probe(1, 0), probe(2, 0))
    assert window(facts) == (0.0, 1.1)


def test_a_full_log_of_passes_does_not_show_when() -> None:
    """Five passing runs: earlier ones were dropped, so the log cannot say when it got ready;
    nor can a log whose last run failed, or an empty one."""
    assert logged_ready_moment(container(*(probe(t, 0) for t in range(1, 6)))) is None
    assert logged_ready_moment(container(probe(1, 0), probe(2, 1))) is None
    assert logged_ready_moment(container()) is None


def test_runs_from_before_the_containers_start_do_not_count() -> None:
    """Runs logged before this run's StartedAt belong to an earlier run of the container."""
    facts = container(probe(1, 0), probe(12, 1), probe(13, 0), started=at(10))
    assert window(facts) == (12.0, 13.1)
    first = container(probe(1, 0), probe(12, 0), started=at(10))
    assert window(first) == (10.0, 12.1), "ready since this run started, by its first check"


def test_a_services_time_to_ready_is_its_slowest_containers() -> None:
    """Each container's time from its start to its recorded moment; the longest counts, and an
    unknown container (no record, or a record of an earlier run) leaves it unknown."""
    one, two = container(cid="a"), container(cid="b")
    started = docker_epoch(STARTED)
    assert started is not None
    moments = {
        "a": ReadyEntry(started_at=STARTED, ready_at=started + 2.5),
        "b": ReadyEntry(started_at=STARTED, ready_at=started + 4.0),
    }
    assert ready_seconds([one, two], moments) == 4.0
    assert ready_seconds([one], {"a": moments["a"]}) == 2.5
    assert ready_seconds([one, two], {"a": moments["a"]}) is None
    earlier = {"a": ReadyEntry(started_at=at(-60), ready_at=started - 50)}
    assert ready_seconds([one], earlier) is None


def test_a_services_earliest_ready_is_its_containers_latest_not_ready() -> None:
    """The earliest a service can have been ready: the longest of its containers' last moments
    not ready; unknown when any container's is (a record written before it was kept)."""
    one, two = container(cid="a"), container(cid="b")
    started = docker_epoch(STARTED)
    assert started is not None
    moments = {
        "a": ReadyEntry(started_at=STARTED, ready_at=started + 2.5, ready_after=started + 0.5),
        "b": ReadyEntry(started_at=STARTED, ready_at=started + 4.0, ready_after=started + 2.0),
    }
    assert ready_after_seconds([one, two], moments) == 2.0
    assert ready_seconds([one, two], moments) == 4.0
    old = {"a": moments["a"], "b": ReadyEntry(started_at=STARTED, ready_at=started + 4.0)}
    assert ready_after_seconds([one, two], old) is None
    assert ready_seconds([one, two], old) == 4.0


def test_the_record_keeps_present_containers_and_drops_gone_ones(tmp_path: Path) -> None:
    """An update records what was seen, keeps earlier entries of containers still there and
    drops those of containers gone."""
    records = ReadinessRecords("proj", tmp_path)
    first = ReadyEntry(started_at=STARTED, ready_at=1.0)
    assert records.update({"a": first, "b": first}, ["a", "b"])
    second = ReadyEntry(started_at=at(5), ready_at=9.0)
    assert records.update({"c": second}, ["a", "c"])
    assert records.read() == {"a": first, "c": second}
    assert (tmp_path / "proj" / "readiness.json").stat().st_mode & 0o777 == 0o600
