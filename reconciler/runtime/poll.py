"""The one poll-until-deadline helper: the timing of every loop that tries again until a deadline.

The checks, the readiness and stack waits and both locks each ask something, then either stop
(done, failed, or the deadline passed) or sleep and ask again. `Poll` holds what they share:
when the wait started, its deadline, the delay before the next try (growing by `factor` up to
`most`, or fixed), the clock, and the sleep. The sleep is the run's stop-aware one
(`StopToken.sleep`) wherever a run has a stop token, so a Ctrl-C ends any wait at once; what a
loop asks, and what it says when it gives up, stay the loop's own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Poll"]


class Poll:
    """A wait's timing: `started`, `deadline`, the next `delay`, and the sleep between tries."""

    def __init__(
        self,
        timeout: float | None,
        *,
        delay: float,
        factor: float = 1.0,
        most: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        started: float | None = None,
    ) -> None:
        """`timeout` seconds from `started` (now by `clock` when not given); None: no deadline
        (the loop keeps its own, such as one per service)."""
        self.clock = clock
        self.started = clock() if started is None else started
        self.deadline = math.inf if timeout is None else self.started + timeout
        self.delay = delay
        self._factor = factor
        self._most = delay if most is None else most
        self._sleep = sleep

    @classmethod
    def until(
        cls,
        deadline: float,
        *,
        delay: float,
        factor: float = 1.0,
        most: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Poll:
        """A poll inside a wait that already has its deadline (a check's HTTP poll)."""
        poll = cls(None, delay=delay, factor=factor, most=most, clock=clock, sleep=sleep)
        poll.deadline = deadline
        return poll

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self.deadline - self.clock()

    def expired(self) -> bool:
        """True once the deadline has come."""
        return self.clock() >= self.deadline

    def room(self) -> bool:
        """True when a try after the next delay would still start before the deadline."""
        return self.left() > self.delay

    def wait(self, seconds: float | None = None) -> None:
        """Sleep the next delay, which then grows (by `factor`, up to `most`); or sleep
        `seconds`, leaving the delay as it is. The sleep raises `StopRequested` when it is the
        run's stop-aware one and a stop is asked for."""
        if seconds is not None:
            self._sleep(seconds)
            return
        self._sleep(self.delay)
        self.delay = min(self.delay * self._factor, self._most)
