"""A read's retries end once its caller abandons it (reconciler/docker/retry.py), so that bad
input found by a concurrent engine-free read is reported at once, not after the backoff."""

from __future__ import annotations

import threading

import pytest

from reconciler.docker.retry import ReadAbandoned, RetryPolicy, retrying
from reconciler.errors import TransientDockerError


def test_abandoned_read_stops_at_its_next_backoff() -> None:
    """A transient fault retried while abandoned ends after one attempt with ReadAbandoned."""
    attempts: list[int] = []
    abandoned = threading.Event()

    def attempt() -> str:
        attempts.append(1)
        abandoned.set()  # the caller gives up while this attempt runs
        raise TransientDockerError("Cannot connect to the Docker daemon")

    policy = RetryPolicy(attempts=6, initial_delay=30.0, max_delay=60.0, give_up_after=600.0)
    with pytest.raises(ReadAbandoned):
        retrying(policy, attempt, what="docker container ls", abandoned=abandoned)
    assert len(attempts) == 1


def test_a_read_not_abandoned_is_retried_as_before() -> None:
    """Without the event set, a transient fault is retried until it succeeds."""
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientDockerError("i/o timeout")
        return "ok"

    policy = RetryPolicy(attempts=5, initial_delay=0.001, max_delay=0.002, give_up_after=10.0)
    assert retrying(policy, attempt, what="docker ps", abandoned=threading.Event()) == "ok"
    assert len(attempts) == 3
