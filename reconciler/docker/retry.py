"""Retry policy for docker calls: tenacity, transient faults only, backoff with jitter.

Each retry is logged with its attempt number, delay and cause; permanent faults pass through
on the first attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from reconciler.errors import TransientDockerError

__all__ = ["RetryPolicy", "retrying"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry a transient fault."""

    attempts: int = 6
    initial_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.5
    give_up_after: float = 120.0


def retrying(policy: RetryPolicy, attempt: Callable[[], _T], *, what: str) -> _T:
    """Call `attempt`, retrying it on `TransientDockerError` as `policy` says."""

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
        retry=retry_if_exception_type(TransientDockerError),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_delay, max=policy.max_delay, jitter=policy.jitter
        ),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.give_up_after),
        before_sleep=log_retry,
        reraise=True,
    )
    return controller(attempt)
