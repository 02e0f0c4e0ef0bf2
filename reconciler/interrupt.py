"""Graceful stop: SIGINT/SIGTERM ask apply to stop at the next point between actions.

The CLI installs `install_handlers`; the loop calls `stop_point` between actions, which raises
`StopRequested` (exit 128 + signal: 130 for SIGINT, 143 for SIGTERM). Nothing is cut in half:
file writes are atomic and a running docker command is allowed to finish.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import structlog

from reconciler.errors import ReconcilerError

__all__ = [
    "StopRequested",
    "install_handlers",
    "request_stop",
    "reset",
    "restore_handlers",
    "stop_point",
]

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


Handlers = dict[int, Any]


def install_handlers() -> Handlers:
    """SIGINT/SIGTERM: first one requests a stop between actions; a second one stops now.

    Returns the previous handlers, for `restore_handlers`.
    """
    reset()
    previous: Handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        if _requested is not None:
            raise KeyboardInterrupt
        _log.warning(
            "stop requested; finishing the current action", signal=signal.Signals(signum).name
        )
        request_stop(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return previous


def restore_handlers(previous: Handlers) -> None:
    """Put back the handlers `install_handlers` replaced, and forget any stop request."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    reset()
