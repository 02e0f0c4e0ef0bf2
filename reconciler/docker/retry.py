"""Retry policy for docker calls: tenacity, transient faults only, backoff with jitter.

Each retry is logged with its attempt number, delay and cause; permanent faults pass through
on the first attempt. A mutating call is retried only when its fault proves nothing ran: the
docker CLI could not reach the daemon at all. A timeout, or a connection lost mid-way, may have
left the mutation running (killing `docker compose exec` does not stop the command inside the
container), so it is never repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from reconciler.errors import TransientDockerError
from reconciler.logs import get_logger
from reconciler.runtime.interrupt import StopToken

__all__ = ["NOTHING_RAN_PATTERNS", "ReadAbandoned", "RetryPolicy", "nothing_ran", "retrying"]

# What the docker CLI prints when its very first request cannot reach the daemon: nothing ran.
NOTHING_RAN_PATTERNS: tuple[str, ...] = (
    "cannot connect to the docker daemon",
    "is the docker daemon running",
)

_log = get_logger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient fault."""

    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.5
    give_up_after: float = 120.0


def nothing_ran(error: BaseException) -> bool:
    """True for a transient fault that proves the command never reached the daemon."""
    if not isinstance(error, TransientDockerError):
        return False
    text = f"{error.message}\n{error.output}".lower()
    return any(pattern in text for pattern in NOTHING_RAN_PATTERNS)


class ReadAbandoned(Exception):
    """A read's backoff ended because its caller abandoned it (never reaches a user)."""


def _backoff_sleep(stop: StopToken, abandoned: threading.Event | None) -> Callable[[float], None]:
    if abandoned is None:
        return stop.sleep

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if abandoned.is_set():
                raise ReadAbandoned
            stop.sleep(min(left, 0.05))

    return sleep


def _transient(error: BaseException) -> bool:
    return isinstance(error, TransientDockerError)


def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], _T],
    *,
    what: str,
    mutating: bool = False,
    stop: StopToken | None = None,
    abandoned: threading.Event | None = None,
) -> _T:
    """Call `attempt`, retrying transient faults as `policy` says (mutations: see module doc).

    Once `abandoned` is set (the caller no longer wants the answer: a concurrent read found the
    input invalid), a backoff ends at once with `ReadAbandoned` instead of waiting for an
    engine that is not there.
    """

    def log_retry(state: RetryCallState) -> None:
        outcome = state.outcome
        cause = outcome.exception() if outcome else None
        _log.warning(
            "docker call failed transiently; retrying",
            command=what,
            attempt=state.attempt_number,
            delay=round(state.next_action.sleep, 2) if state.next_action else None,
            cause=str(cause),
        )

    controller = Retrying(
        retry=retry_if_exception(nothing_ran if mutating else _transient),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_delay, max=policy.max_delay, jitter=policy.jitter
        ),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.give_up_after),
        before_sleep=log_retry,
        # A stop request ends a backoff at once, instead of after up to max_delay seconds.
        sleep=_backoff_sleep(stop or StopToken(), abandoned),
        reraise=True,
    )
    return controller(attempt)
