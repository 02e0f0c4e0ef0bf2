"""What the readiness waits share: the time a wait lost to an engine that stopped answering.

A wait samples the engine (a few batched reads) until its services are ready or their
deadlines pass. A sample that takes `SILENT` seconds or more means the engine did not answer
meanwhile (a frozen or overloaded daemon, a read timed out and retried): what the services did
in that time cannot be seen, and the engine runs their health checks, so a deadline that passes
then says nothing of the services. Such a deadline gets one more sample, taken as soon as the
engine answers, before a service is declared not ready; if it still is not, the error leads
with the engine (`the engine did not answer for 70.2 s of the 75.6 s wait; not ready once it
answered: cache (health: starting)`), not with the service. A wait that only lost some of its
time to the engine says so after the time waited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from reconciler.logs import get_logger
from reconciler.state import State

__all__ = ["DEFAULT_TIMEOUT", "SILENT", "EngineSilence", "Readiness", "service_deadlines"]

_log = get_logger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Readiness:
    """Where one service stands while waiting (a compose service's containers, or a stack
    service's tasks): ready, failed for good, or neither yet, and why, for people."""

    service: str
    ready: bool
    failed: bool
    summary: str


# A sample answers in well under a second; one that takes this long waited for the engine.
SILENT = 5.0
# How long a service the state does not declare is waited for.
DEFAULT_TIMEOUT = 120.0


def service_deadlines(state: State, services: Iterable[str], started: float) -> dict[str, float]:
    """Each service's deadline: `started` plus its `health_timeout` (`DEFAULT_TIMEOUT` for a
    service the state does not declare)."""
    return {
        name: started
        + (state.services[name].health_timeout if name in state.services else DEFAULT_TIMEOUT)
        for name in services
    }


@dataclass
class EngineSilence:
    """The samples of one wait, timed: how long the engine did not answer (`silent`)."""

    clock: Callable[[], float]
    started: float
    silent: float = 0.0  # seconds spent in samples that waited for the engine
    asked: float = 0.0  # when the last sample was asked for
    answered: float = 0.0  # when it was answered
    deadline_in_silence: bool = False  # a deadline passed while a sample waited for the engine

    def sample(self, read: Callable[[], _T]) -> _T:
        """`read()`, timed; a slow one is logged and counted as the engine's silence."""
        asked = self.clock()
        value = read()
        answered = self.clock()
        self.asked, self.answered = asked, answered
        if answered - asked >= SILENT:
            self.silent += answered - asked
            _log.warning(
                "the engine did not answer while waiting for services",
                seconds=round(answered - asked, 1),
            )
        return value

    @property
    def elapsed(self) -> float:
        """Seconds from the start of the wait to the last answer."""
        return self.answered - self.started

    def ask_again(self, deadlines: Iterable[float]) -> bool:
        """True when one of these deadlines passed while the last sample waited for the
        engine: the next sample, taken as soon as it answered, decides instead. Once only:
        that next sample is asked for after the deadline."""
        if self.answered - self.asked < SILENT:
            return False
        crossed = any(self.asked < deadline <= self.answered for deadline in deadlines)
        self.deadline_in_silence = self.deadline_in_silence or crossed
        return crossed

    def headline(self, *, late: bool) -> str:
        """The start of the error of a wait that ended (`late`: a deadline passed): the
        engine's silence first when a deadline passed during it, else the time waited."""
        if late and self.deadline_in_silence:
            return (
                f"the engine did not answer for {self.silent:.1f} s of the {self.elapsed:.1f} s "
                "wait; not ready once it answered"
            )
        if self.silent:
            return (
                f"not ready after {self.elapsed:.1f} s (the engine did not answer for "
                f"{self.silent:.1f} s of it)"
            )
        return f"not ready after {self.elapsed:.1f} s"
