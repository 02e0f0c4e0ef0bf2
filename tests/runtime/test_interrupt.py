"""SIGINT and SIGTERM at random moments: a fast, clean stop (130/143), and the next apply converges.

First the token's own rules, without Docker: a stop request cuts work that ends as it lands, and
no thread logs the end of its work after another logged that the run acts on the stop.

Each trial changes a file in the e2e stack's build context and starts an apply (three builds, a
compose up recreating three services, health waits), sends the signal after a random delay, and reads from the JSON log where
the signal landed. A signal that lands in a build, a docker read or a wait cuts it at once: the
command's end is never logged, the wait takes no further sample; a compose up is allowed to
finish first. Once the apply acts on the stop, it starts nothing more. Then a full apply must
converge.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.errors import StopRequested
from reconciler.logs import get_logger
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from tests.conftest import RECONCILER, Stack, run_cli

_log = get_logger(__name__)
TRIALS = 20
# What the apply logs when it runs or ends a docker command, starts a step or a build, samples
# health or changes something: none of it may follow the moment it acts on a stop.
WORK = {
    "docker call",
    "step started",
    "building image",
    "compose up",
    "compose up --force-recreate",
    "service health",
    "waiting for services",
    "all services ready",
    "changed",
    "converged",
}
ACTED = {"stop requested; terminating", "stop requested; stopping"}


def landed(stderr: str) -> str:
    """Where the stop landed, from the apply's JSON log: build, wait, compose-up, between, none."""
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "stop requested; terminating":
            return "build" if "build" in event.get("command", "") else "docker-read"
        if event.get("event") == "stop requested; letting this finish first":
            return "compose-up"
        if event.get("event") == "stop requested; stopping":
            where = str(event.get("where", ""))
            if where == "while waiting":
                return "wait"
            return "between"
    return "none"


def work_after_the_stop(stderr: str) -> list[dict[str, object]]:
    """The apply's JSON log events of `WORK` from the moment it acted on the stop (cut a command,
    or stopped at a stop point) on: a cut command's own end (`docker call`) counts too."""
    events: list[dict[str, object]] = []
    for line in stderr.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    acted = next((i for i, e in enumerate(events) if e.get("event") in ACTED), len(events))
    return [e for e in events[acted:] if e.get("event") in WORK]


def takes_over_signals(pid: int, timeout: float = 30.0) -> None:
    """Wait until process `pid` has its own signal handlers: its SIGTERM bit in /proc/PID/status
    `SigCgt`. Python catches SIGINT itself from its start (to raise KeyboardInterrupt), so that
    bit says nothing; nothing but reconciler catches SIGTERM, and its SIGINT handler is installed
    just before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.002)
    raise AssertionError(f"pid {pid} did not take over SIGINT and SIGTERM within {timeout} s")


def children_of(stack: Stack) -> list[str]:
    """Processes still running a command for this stack (docker, compose, buildx): orphans."""
    found = subprocess.run(
        ["pgrep", "-a", "-f", str(stack.directory)], capture_output=True, text=True, check=False
    )
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def _answers_then_asks_to_stop(
    stop: StopToken, on_stop: processes.OnStop, monkeypatch: pytest.MonkeyPatch
) -> processes.Finished:
    """Run a child that prints one line and ends; the line's callback asks to stop, so the
    child's end reaches the runner after the request (the runner joins its readers first). The
    runner's poll is made longer than the child's life: it never looks at the token between the
    request and the child's end (it would cut a child still finishing, the other path)."""
    monkeypatch.setattr(processes, "_POLL", 60.0)
    return processes.run(
        [sys.executable, "-c", "print('answer')"],
        stop=stop,
        on_stop=on_stop,
        on_line=lambda _line: stop.request(signal.SIGTERM),
    )


def test_a_read_that_ends_as_the_stop_comes_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child a stop cuts, ending on its own just after the request: StopRequested, as if it
    had been cut (the run starts nothing more); one that must finish is returned as done."""
    stop = StopToken()
    with capture_logs() as events, pytest.raises(StopRequested) as raised:
        _answers_then_asks_to_stop(stop, processes.OnStop.CUT, monkeypatch)
    assert raised.value.signum == signal.SIGTERM
    assert [e["event"] for e in events] == ["stop requested; stopping"]

    finished = _answers_then_asks_to_stop(StopToken(), processes.OnStop.FINISH, monkeypatch)
    assert (finished.returncode, finished.stdout) == (0, "answer\n")


def test_no_end_of_work_is_logged_after_a_thread_acts_on_the_stop() -> None:
    """One thread logs the end of its read while another cuts a command: the cut's line waits
    for the end's, and once it is logged, an end that a stop cuts raises instead of logging."""
    stop = StopToken()
    inside, cutting = threading.Event(), threading.Event()

    def ends_its_read() -> None:
        with stop.unless_stopped("after a read", cut=True):
            inside.set()
            assert cutting.wait(5)
            time.sleep(0.2)  # the other thread is blocked on the token meanwhile
            _log.debug("docker call", argv="read")

    def cuts_a_command() -> None:
        assert inside.wait(5)
        stop.request(signal.SIGINT)
        cutting.set()
        stop.terminating("build")

    with capture_logs() as events:
        threads = [threading.Thread(target=f) for f in (ends_its_read, cuts_a_command)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        with pytest.raises(StopRequested), stop.unless_stopped("after a read", cut=True):
            _log.debug("docker call", argv="late read")
        with stop.unless_stopped("after compose up", cut=False):
            _log.debug("docker call", argv="compose up")
    assert [(e["event"], e.get("argv", e.get("command"))) for e in events] == [
        ("docker call", "read"),
        ("stop requested; terminating", "build"),
        ("stop requested; stopping", None),
        ("docker call", "compose up"),
    ]


@pytest.mark.docker
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_at_random_moments_stops_fast_and_next_apply_converges(
    stack: Stack, signum: signal.Signals, code: int
) -> None:
    """20 signals at random moments: exit 130/143, nothing run once stopped, then converge."""
    state: Path = stack.state_file
    context_file = stack.directory / "trial.txt"
    context_file.write_text("first\n")
    assert run_cli("apply", state).returncode == 0
    context_file.write_text("second\n")
    started = time.monotonic()
    assert run_cli("apply", state).returncode == 0
    switch_seconds = time.monotonic() - started

    rng = random.Random(f"{signum.name}-20261123")
    where: Counter[str] = Counter()
    for trial in range(TRIALS):
        context_file.write_text(f"trial {trial}\n")
        apply = subprocess.Popen(
            [*RECONCILER, "apply", str(state), "--log-format", "json", "--verbose"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Only once the CLI owns the signal (its first statements take it over; before, in the
        # interpreter's own start-up, Python's default applies): on a loaded machine that can
        # take longer than any fixed delay.
        takes_over_signals(apply.pid)
        time.sleep(rng.uniform(0.0, switch_seconds))
        apply.send_signal(signum)
        _, err = apply.communicate(timeout=300)
        spot = landed(err)
        where[spot] += 1
        if apply.returncode == 0 and spot == "none":
            where["finished-before"] += 1
            where["none"] -= 1
        else:
            assert apply.returncode == code, f"trial {trial} ({spot}): {err[-2000:]}"
            assert f"stopped by {signum.name}" in err
            assert "Traceback" not in err
        assert not children_of(stack), f"trial {trial}: orphans {children_of(stack)}"
        after = work_after_the_stop(err)
        assert not after, f"trial {trial} ({spot}): went on after the stop: {after}"
        done = run_cli("apply", state)
        assert done.returncode == 0, f"trial {trial}: next apply failed:\n{done.stderr[-3000:]}"
    assert not list(stack.directory.glob(".docker-compose.yml.*.tmp"))
    print(
        f"\n{TRIALS} {signum.name} trials (switch {switch_seconds:.1f} s): "
        f"{dict(sorted((+where).items()))}; nothing run once stopped; no orphans; every next "
        "apply converged"
    )


# Crash safety: SIGKILL an apply at random moments; the compose file is never corrupt and the
# next apply always converges.


TRIALS_kill_trials = 50


def apply(state: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("apply", state)


@pytest.mark.docker
def test_sigkill_never_corrupts_the_file_and_next_apply_converges(stack: Stack) -> None:
    """50 kills at random moments while switching api between two tags: file old or new, then converge."""
    state_a = stack.state_file
    state_b = stack.directory / "state-b.yaml"
    state_b.write_text(state_a.read_text().replace(stack.image("api"), stack.image("api", "2")))
    assert apply(state_b).returncode == 0
    bytes_b = stack.compose_file.read_bytes()
    started = time.monotonic()
    assert apply(state_a).returncode == 0
    switch_seconds = time.monotonic() - started
    bytes_a = stack.compose_file.read_bytes()
    assert bytes_a != bytes_b

    rng = random.Random(20261123)
    corrupt, old_kept, new_written = 0, 0, 0
    for trial in range(TRIALS_kill_trials):
        target, old, new = (
            (state_b, bytes_a, bytes_b) if trial % 2 == 0 else (state_a, bytes_b, bytes_a)
        )
        killed = subprocess.Popen(
            [*RECONCILER, "apply", str(target)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Half the kills land in the first 1.5 s, around the compose-file write; the rest
        # anywhere in a whole switch (builds, compose up, health waits).
        window = 1.5 if trial % 4 < 2 else switch_seconds
        time.sleep(rng.uniform(0.0, window))
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        content = stack.compose_file.read_bytes()
        corrupt += content not in (old, new)
        old_kept += content == old
        new_written += content == new
        done = apply(target)
        assert done.returncode == 0, (
            f"trial {trial}: next apply did not converge:\n{done.stderr[-3000:]}"
        )
        assert stack.compose_file.read_bytes() == new
    print(
        f"\n{TRIALS_kill_trials} kill trials: {corrupt} corrupt files, {old_kept} killed before the write, "
        f"{new_written} after; every next apply converged (switch took {switch_seconds:.1f} s)"
    )
    assert corrupt == 0
    assert not list(stack.directory.glob(".docker-compose.yml.*.tmp"))
