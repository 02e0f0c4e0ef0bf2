"""Container facts: where a container's current run begins in its log (`log_since`), and
docker's RFC 3339 times read as epoch seconds."""

from __future__ import annotations

import pytest

from reconciler.docker.facts import ContainerFacts, docker_epoch

STARTED = "2026-12-07T12:00:11.807769000Z"
ZERO = "0001-01-01T00:00:00Z"


def container(status: str, *, finished: str = ZERO, restarts: int = 0) -> ContainerFacts:
    """A container of `status` started at STARTED, whose last run ended at `finished`."""
    return ContainerFacts(
        "c1",
        "web-1",
        "web",
        status,
        None,
        0,
        "h",
        "sha256:1",
        restart_count=restarts,
        started_at=STARTED,
        finished_at=finished,
    )


def test_docker_times_read_to_the_microsecond() -> None:
    """Docker's nanosecond times read to the microsecond; zero, empty or garbled times are None."""
    assert docker_epoch("2026-12-07T12:00:11.806038123Z") == pytest.approx(1796644811.806038)
    assert docker_epoch("2026-12-07T12:00:11Z") == pytest.approx(1796644811.0)
    assert docker_epoch(ZERO) is None
    assert docker_epoch("") is None
    assert docker_epoch("yesterday") is None


def test_a_first_run_is_read_from_the_logs_start() -> None:
    """A container on its first run is read from the start of its log, never from StartedAt:
    docker can stamp its first lines before StartedAt."""
    assert container("running").log_since is None
    assert container("exited", finished="2026-12-07T12:00:12Z").log_since is None


def test_a_running_container_that_ran_before_is_read_from_its_previous_runs_end() -> None:
    """While a container runs again (docker restart, a stop and start, a restart policy), its
    FinishedAt is its previous run's end: the exact boundary."""
    previous_end = "2026-12-07T12:00:11.500000Z"
    for status in ("running", "paused", "restarting"):
        assert container(status, finished=previous_end, restarts=1).log_since == pytest.approx(
            docker_epoch(previous_end)
        )
    # Restarted by hand (restart count 0) is the same.
    assert container("running", finished=previous_end).log_since == docker_epoch(previous_end)


def test_an_ended_container_that_restarted_before_is_read_from_just_before_its_start() -> None:
    """An ended container has no record of its earlier run's end: read from 50 ms before
    StartedAt, half docker's least restart delay."""
    ended = container("exited", finished="2026-12-07T12:00:12Z", restarts=2)
    started = docker_epoch(STARTED)
    assert started is not None
    assert ended.log_since == pytest.approx(started - 0.05)


def test_a_finished_time_after_the_start_is_not_a_previous_run() -> None:
    """A running container whose FinishedAt is after its StartedAt (clock skew) is read whole."""
    assert container("running", finished="2026-12-07T12:00:13Z", restarts=1).log_since is None


def test_a_container_that_never_started_has_no_boundary() -> None:
    """A created container (no StartedAt) is read from its log's start."""
    created = ContainerFacts("c1", "web-1", "web", "created", None, 0, "h", "sha256:1")
    assert created.log_since is None
