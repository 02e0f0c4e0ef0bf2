"""The one poll helper (reconciler.runtime.poll): deadlines, growing delays, stop-aware waits."""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.errors import StopRequested
from reconciler.runtime.interrupt import StopToken
from reconciler.runtime.poll import Poll
from tests.facts.clock import FakeClock


def test_the_delay_grows_by_its_factor_up_to_its_most() -> None:
    """Each wait sleeps the current delay, then multiplies it, never past `most`."""
    clock = FakeClock()
    poll = Poll(60.0, delay=0.5, factor=1.5, most=3.0, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        poll.wait()
    assert clock.slept == [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.0, 3.0]


def test_a_fixed_delay_stays_and_a_one_off_wait_leaves_it() -> None:
    """Without a factor the delay is fixed; `wait(seconds)` sleeps that once, delay unchanged."""
    clock = FakeClock()
    poll = Poll(10.0, delay=0.2, clock=clock, sleep=clock.sleep)
    poll.wait()
    poll.wait(2.0)
    poll.wait()
    assert clock.slept == [0.2, 2.0, 0.2]
    assert poll.delay == 0.2


def test_deadline_room_and_expiry_follow_the_clock() -> None:
    """`room` is false once the next delay would end at or past the deadline; `expired` at it."""
    clock = FakeClock(100.0)
    poll = Poll(1.0, delay=0.4, clock=clock, sleep=clock.sleep)
    assert (poll.started, poll.deadline) == (100.0, 101.0)
    assert poll.room()
    assert not poll.expired()
    poll.wait()
    assert poll.room()
    poll.wait()
    assert not poll.room()
    assert not poll.expired()
    assert poll.left() == pytest.approx(0.2)
    clock.sleep(0.2)
    assert poll.expired()


def test_no_timeout_means_no_deadline_and_a_given_start_is_kept() -> None:
    """`timeout=None` never expires; `started` given is the start, not the clock's now."""
    clock = FakeClock(5.0)
    poll = Poll(None, delay=1.0, clock=clock, sleep=clock.sleep, started=2.0)
    clock.sleep(1e9)
    assert poll.started == 2.0
    assert not poll.expired()
    assert poll.room()


def test_until_keeps_the_given_deadline_exactly() -> None:
    """A poll inside a wait shares its deadline to the bit (no start-plus-timeout rounding)."""
    clock = FakeClock(0.1)
    deadline = 0.30000000000000004
    poll = Poll.until(deadline, delay=0.25, clock=clock, sleep=clock.sleep)
    assert poll.deadline == deadline
    assert not poll.room()


def test_a_stop_request_ends_a_wait_promptly() -> None:
    """With the run's stop-aware sleep, a stop asked for mid-wait ends a long delay at once."""
    stop = StopToken()
    poll = Poll(600.0, delay=300.0, sleep=stop.sleep)
    threading.Timer(0.1, stop.request).start()
    started = time.monotonic()
    with pytest.raises(StopRequested):
        poll.wait()
    assert time.monotonic() - started < 2.0
