"""The library's loggers: structlog's, once the program has configured structlog; silent before.

structlog unconfigured prints every event to stdout, which would make `import reconciler` from
another program print on its stdout. A library never configures logging, so each call asks
structlog whether the program did (the CLI does; `structlog.testing.capture_logs` does too).

`ProgressEvent` names the events a progress view follows (the CLI's live view,
`reconciler.cli.live`): the modules that log them and the view use these members, never the
strings. An event is logged under its value (a plain string), so JSON logs read as before.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

import structlog

__all__ = ["Logger", "ProgressEvent", "get_logger"]


class ProgressEvent(StrEnum):
    """The progress events, by the name they are logged under; the fields each carries."""

    PLAN = "plan"  # changes (plan-JSON rows), ok (count): before anything runs
    STEP_STARTED = "step started"  # step (a phase: observe, a step, verify, its verify phase)
    STEP_FINISHED = "step finished"  # step, seconds
    STEP_FAILED = "step failed"  # step, error
    LOCK_WAIT = "waiting for the lock"  # project, timeout
    CHANGED = "changed"  # step, target, action: one change made
    PULLING_IMAGE = "pulling image"  # image
    MAKING_BASE_IMAGE = "making base image"  # image
    BUILDING_IMAGE = "building image"  # image, context
    TRANSFERRING_IMAGE = "transferring image"  # image, of_mib, percent
    BUILD_OUTPUT = "build output"  # image, line
    DOWNLOADING_WHEELS = "downloading wheels"  # requirements, into
    COMPOSE_UP = "compose up"  # services
    COMPOSE_UP_FORCED = "compose up --force-recreate"  # services
    COMPOSE_OUTPUT = "compose output"  # line
    SERVICE_HEALTH = "service health"  # service, state, ready, (failed)
    WAITING_FOR_SERVICES = "waiting for services"  # pending: service -> state
    ALL_SERVICES_READY = "all services ready"  # seconds
    UPGRADING = "upgrading"  # migration, service, detail
    CHECK = "check"  # name, passed, detail, kind: one result of a verify phase
    IN_SYNC = "in sync; nothing to do"  # ok
    CONVERGED = "converged"  # changed
    APPLY_FAILED = "apply failed"  # error


class Logger(Protocol):
    """The logging methods reconciler uses."""

    def debug(self, event: str, **fields: Any) -> Any: ...
    def info(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...


class _QuietUntilConfigured:
    def __init__(self, name: str) -> None:
        self._name = name

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():  # a `ProgressEvent` as its plain string value
            getattr(structlog.get_logger(self._name), level)(str(event), **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)


def get_logger(name: str) -> Logger:
    """A logger named `name` that logs through structlog once structlog is configured."""
    return _QuietUntilConfigured(name)
