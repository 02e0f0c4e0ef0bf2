"""Stopping an apply on request: a per-run `StopToken`, and the signal handlers that fill it.

A signal handler only records the request (two attribute stores: no logging, no locks, no I/O,
nothing that allocates through a library): a handler that logged once deadlocked on structlog's
print lock when the signal landed mid-write. Everything else happens in the run's own code:
`StopToken.check` raises `StopRequested` at the next stop point and logs there; the child-process
runner (`reconciler.runtime.processes`) polls the token and cuts what is safe to cut at the first
request, and everything at the second.

Several threads may be at work when the request lands (the observation's concurrent reads). The
token's lock orders their log: a thread logs that it acts on the stop (`terminating`, `stopped`) and
another logs the end of its work (`unless_stopped`) one at a time, so no end of work follows the
first line that says the run is stopping. The handler never takes that lock.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from reconciler.errors import StopRequested

if TYPE_CHECKING:
    from reconciler.logs import Logger

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
        # Taken by the run's threads, never by a signal handler; reentrant, as `stopped` is
        # called inside `unless_stopped`.
        self._lock = threading.RLock()

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
        with self._lock:
            if not self._logged:
                self._logged = True
                _logger().warning(
                    "stop requested; stopping", signal=signal_name(self.signum), where=where
                )
        return StopRequested(self.signum, where)

    def terminating(self, command: str) -> None:
        """Log that the run acts on the stop now: it cuts `command`."""
        with self._lock:
            _logger().warning("stop requested; terminating", command=command)

    @contextmanager
    def unless_stopped(self, where: str, *, cut: bool) -> Iterator[None]:
        """Hold while logging the end of a piece of work (a command that ended on its own).

        Raises StopRequested instead when a stop was asked for and the work is one a stop cuts
        (`cut`): its result came as the stop did and is not used (work that must finish, once
        ended, is reported as done). Either way no other thread logs that it acts on the stop
        meanwhile.
        """
        with self._lock:
            if self.signum is not None and cut:
                raise self.stopped(where)
            yield

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


def _logger() -> Logger:
    # Imported here: `python -m reconciler` installs the handlers before any heavy import.
    from reconciler.logs import get_logger  # noqa: PLC0415

    return get_logger(__name__)


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
