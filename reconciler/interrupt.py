"""Graceful stop: SIGINT/SIGTERM ask apply to stop at the next point between actions.

The CLI installs `install_handlers`; the loop calls `stop_point` between actions, which raises
`StopRequested` (exit 128 + signal: 130 for SIGINT, 143 for SIGTERM). Nothing is cut in half:
file writes are atomic and a running docker command is allowed to finish.
"""

from __future__ import annotations

import signal
from types import FrameType

import structlog

from reconciler.errors import ReconcilerError

__all__ = ["StopRequested", "install_handlers", "request_stop", "reset", "stop_point"]

_log = structlog.get_logger(__name__)
_requested: int | None = None


class StopRequested(ReconcilerError):
    """A stop was requested by a signal; raised at the next point between actions."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} before {where}; everything done so far is consistent")


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running apply to stop at its next stop point."""
    global _requested  # noqa: PLW0603 - one process-wide flag, as signals are process-wide
    _requested = signum


def reset() -> None:
    """Forget a stop request (for tests and long-lived callers)."""
    global _requested  # noqa: PLW0603 - see request_stop
    _requested = None


def stop_point(where: str) -> None:
    """Raise StopRequested if a stop was requested."""
    if _requested is not None:
        _log.warning(
            "stop requested; stopping", signal=signal.Signals(_requested).name, before=where
        )
        raise StopRequested(_requested, where)


def install_handlers() -> None:
    """SIGINT/SIGTERM: first one requests a stop between actions; a second one stops now."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if _requested is not None:
            raise KeyboardInterrupt
        _log.warning(
            "stop requested; finishing the current action", signal=signal.Signals(signum).name
        )
        request_stop(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
