"""Stopping an apply on request: a per-run `StopToken`, and the signal handlers that fill it.

A signal handler only records the request (two attribute stores: no logging, no locks, no I/O,
nothing that allocates through a library): a handler that logged once deadlocked on structlog's
print lock when the signal landed mid-write. Everything else happens in the run's own code:
`StopToken.check` raises `StopRequested` at the next stop point and logs there; the child-process
runner (`reconciler.runtime.processes`) polls the token and cuts what is safe to cut at the first
request, and everything at the second.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from reconciler.errors import StopRequested

__all__ = ["StopRequested", "StopToken", "install_handlers", "restore_handlers"]

_SLICE = 0.05  # how often a wait looks at the token: a stop is seen within 50 ms


class StopToken:
    """The stop requests of one run: the first signal asks, the second insists.

    `request` is what a signal handler calls; it only stores two attributes. Library callers
    may call it from any thread to stop a run they started.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._logged = False

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask the run to stop (async-signal-safe: attribute stores only)."""
        self.signum = signum
        self.count += 1

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self.signum is not None

    @property
    def urgent(self) -> bool:
        """True after a second request: even uninterruptible actions are cut."""
        return self.count >= 2

    def check(self, where: str) -> None:
        """Raise StopRequested (logged once) if a stop was asked for; `where`: before what."""
        if self.signum is not None:
            raise self.stopped(f"before {where}")

    def stopped(self, where: str) -> StopRequested:
        """The StopRequested error for this request, logged the first time."""
        assert self.signum is not None
        if not self._logged:
            self._logged = True
            # Imported here: `python -m reconciler` installs the handlers before any heavy import.
            from reconciler.logs import get_logger  # noqa: PLC0415

            get_logger(__name__).warning(
                "stop requested; stopping", signal=signal_name(self.signum), where=where
            )
        return StopRequested(self.signum, where)

    def sleep(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Sleep `seconds`, in slices; raise StopRequested as soon as a stop is asked for."""
        end = clock() + seconds
        while True:
            if self.signum is not None:
                raise self.stopped("while waiting")
            left = end - clock()
            if left <= 0:
                return
            time.sleep(min(left, _SLICE))


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM, ... (or `signal N`)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


Handlers = dict[int, Any]


def install_handlers(token: StopToken) -> Handlers:
    """Route SIGINT and SIGTERM to `token`; return the previous handlers for `restore_handlers`."""
    previous: Handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        token.request(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return previous


def restore_handlers(previous: Handlers) -> None:
    """Put back the handlers `install_handlers` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
