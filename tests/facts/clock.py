"""A fake monotonic clock for tests of waits and deadlines."""

from __future__ import annotations


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
