"""The library's loggers: structlog's, once the program has configured structlog; silent before.

structlog unconfigured prints every event to stdout, which would make `import reconciler` from
another program print on its stdout. A library never configures logging, so each call asks
structlog whether the program did (the CLI does; `structlog.testing.capture_logs` does too).
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

__all__ = ["Logger", "get_logger"]


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
        if structlog.is_configured():
            getattr(structlog.get_logger(self._name), level)(event, **fields)

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
