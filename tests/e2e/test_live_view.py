"""The live view of `apply` on a real pseudo-terminal, against the real engine: what a person sees.

The e2e stack's worker is made slow to become healthy (its healthcheck passes 3 s after its
first run), so every apply has a real health wait to watch. The screen is read through a
terminal emulator (pyte), and every read of the terminal is timestamped.
"""

from __future__ import annotations

import re
import signal
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.terminal import Terminal

pytestmark = pytest.mark.docker

# Fails its first run, then passes once 3 s have gone by since: "health: starting" for ~3 s.
SLOW_HEALTH = (
    '["CMD-SHELL", "[ -f /www/up ] || { touch /www/up; exit 1; }; '
    '[ $(( $(date +%s) - $(stat -c %Y /www/up) )) -ge 3 ]"]'
)
SPINNER = re.compile("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]")
HEALTH_TEST = '["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]'


def slow_build(stack: Stack) -> str:
    """A build step that prints, waits 1 s, prints again; never cached (a fresh tag in it)."""
    tag = uuid.uuid4().hex[:8]
    with (stack.directory / "Dockerfile").open("a") as dockerfile:
        dockerfile.write(
            f'RUN ["/bin/sh", "-c", "echo compiling part 1 of 2 {tag}; sleep 1; '
            f'echo compiling part 2 of 2 {tag}"]\n'
        )
    return tag


def slow_worker_with_a_check(stack: Stack) -> None:
    """The worker becomes healthy 3 s after its first healthcheck; the state gains a check."""
    text = stack.compose_file.read_text()
    head, _, tail = text.rpartition(HEALTH_TEST)  # the last service in the file: the worker
    assert head, "the stack's healthcheck changed"
    stack.compose_file.write_text(head + SLOW_HEALTH + tail)
    with stack.state_file.open("a") as state:
        state.write(
            "checks:\n"
            "  - name: api answers\n"
            "    deadline: 30\n"
            f'    http: {{url: "http://127.0.0.1:{stack.port}/health", '
            "expect_json: {status: healthy}}\n"
        )


def apply_on_a_terminal(stack: Stack) -> Terminal:
    return Terminal([sys.executable, "-m", "reconciler", "apply", str(stack.state_file)])


def above(lines: list[str], prefix: str) -> int:
    """The row of the screen that starts with `prefix` (the first one)."""
    return next(row for row, line in enumerate(lines) if line.startswith(prefix))


def line_of(screen: str, pattern: str) -> str:
    lines = [line for line in screen.splitlines() if re.search(pattern, line)]
    assert len(lines) == 1, f"{pattern!r} on {len(lines)} lines of:\n{screen}"
    return lines[0]


def test_apply_shows_plan_then_each_step_and_service_then_the_recap(stack: Stack) -> None:
    """Plan first; then steps, targets, health states and the check as they happen, the screen
    changing at least once a second throughout (the health wait included); the recap last."""
    slow_worker_with_a_check(stack)
    tag = slow_build(stack)
    terminal = apply_on_a_terminal(stack)
    try:
        code = terminal.wait(300)
    finally:
        terminal.close()
    screen = terminal.display()
    print(screen)  # what a person saw last (pytest -s)
    assert code == 0, screen
    text = terminal.text

    # The plan comes first (printed above the view as soon as observed, before any step runs),
    # then the view, then the summary and the recap.
    assert text.index("services      create    worker") < text.index("Plan: 6 to change")
    assert text.index("Plan: 6 to change") < text.index("now: images")
    lines = screen.splitlines()
    assert lines.index("Plan: 6 to change, 4 ok.") < above(lines, f"apply {stack.project}")
    recap = re.findall(r"ok=\d+ changed=6 failed=0", text)
    assert len(recap) == 1
    assert text.rindex(f"apply {stack.project}") < text.index(recap[0])
    assert screen.splitlines()[-1] == recap[0]

    # While it ran: each step as it ran, the health of the slow worker as it was sampled.
    assert re.search(r"now: images \(building " + re.escape(stack.project + "-"), text)
    assert re.search(rf"\n {{8}}#\d+ [\d.]+ compiling part 1 of 2 {tag}", text), "a build's output"
    assert re.search(r"now: services \(compose up api, db, worker\)", text)
    assert re.search(r"create +worker +\d+\.\d s  health: starting", text)
    assert "now: checks" in text or "✓ checks" in screen

    # The last frame: every step done, every service healthy, the check's result.
    for step in ("observe", "images", "services", "verify", "checks"):
        assert line_of(screen, rf"^✓ {step} ")
    assert "6 changed" not in line_of(screen, r"^✓ images "), "3 images, not 6"
    assert line_of(screen, r"^✓ images ").endswith("3 changed")
    for service in ("api", "db", "worker"):
        assert line_of(screen, rf"✓ create +{service} ").endswith("running, healthy")
    assert "✓ api answers" in screen
    assert "HTTP 200" in line_of(screen, r"✓ api answers")
    assert "[info" not in screen, "info events went to the view, not the console log"

    # Never silent: from the first frame of the view to the recap, a change at least once a
    # second; the health wait alone lasted about 3 s.
    start = terminal.first_seen(f"apply {stack.project}")
    end = terminal.first_seen(recap[0])
    assert max(terminal.gaps(start, end)) < 1.0
    waited = terminal.first_seen("health: starting")
    assert end - waited > 2.0, "the worker's health wait was watched"
    assert len([f for f in terminal.frames if waited <= f.at <= end]) >= 3 * (end - waited)
    assert terminal.cursor_restored()
    assert not terminal.screen.cursor.hidden
    assert not SPINNER.search(screen)

    # Again: nothing to do, said at once, and a recap with no change.
    again = apply_on_a_terminal(stack)
    try:
        code = again.wait(120)
    finally:
        again.close()
    assert code == 0, again.display()
    lines = again.display().splitlines()
    assert above(lines, "In sync: no changes") < above(lines, f"apply {stack.project}")
    assert "in sync: nothing to do" in again.display()
    assert re.search(r"ok=\d+ changed=0 failed=0$", again.display())


def test_ctrl_c_during_the_health_wait_restores_the_terminal(stack: Stack) -> None:
    """A Ctrl-C while services get healthy: exit 130, the stop shown, the cursor given back."""
    slow_worker_with_a_check(stack)
    terminal = apply_on_a_terminal(stack)
    try:
        terminal.read_until(lambda t: "health: starting" in t.display(), 300)
        terminal.interrupt(signal.SIGINT)
        code = terminal.wait(60)
    finally:
        terminal.close()
    screen = terminal.display()
    assert code == 130, screen
    assert "stop requested" in screen
    assert "stopped by SIGINT" in line_of(screen, r"^✗ services ")
    assert line_of(screen, r"✗ create +worker ").endswith("health: starting")
    assert not SPINNER.search(screen), "nothing shows as running once the run ended"
    assert "ok=" in screen.splitlines()[-1]
    assert terminal.cursor_restored()
    assert not terminal.screen.cursor.hidden


def test_progress_plain_on_a_terminal_is_the_console_log(stack: Stack, tmp_path: Path) -> None:
    """--progress plain on a TTY: the console log as before, no view drawn."""
    terminal = Terminal(
        [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            str(stack.state_file),
            "--progress",
            "plain",
        ]
    )
    try:
        code = terminal.wait(300)
    finally:
        terminal.close()
    assert code == 0, terminal.display()
    assert "[info     ] compose up" in terminal.text
    assert f"apply {stack.project}" not in terminal.text
    assert b"\x1b[?25l" not in terminal.raw
