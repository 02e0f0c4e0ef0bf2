"""The live view of `apply`, without docker: rendering from synthetic events, the structlog set-up
that feeds it, redaction, and the CLI on a real pseudo-terminal (an apply that needs no docker).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import pytest
import structlog
from rich.console import Console

from reconciler.cli import main as cli
from reconciler.cli.live import LiveView, Progress, make_console, plan_text
from reconciler.errors import StopRequested
from reconciler.locks.local import project_lock
from reconciler.logs import get_logger
from reconciler.runtime import processes
from reconciler.runtime.interrupt import StopToken
from reconciler.secrets.redact import RedactingStream, Secrets
from tests.conftest import Stack
from tests.terminal import Terminal


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shown(progress: Progress, now: float | None = None) -> str:
    """What the view shows, as plain text (120 columns, no colour)."""
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(progress.render(now))
    return out.getvalue()


def line_of(text: str, needle: str) -> str:
    """The one line of `text` that contains `needle`."""
    lines = [line for line in text.splitlines() if needle in line]
    assert len(lines) == 1, f"{needle!r} on {len(lines)} lines of:\n{text}"
    return lines[0]


def feed(progress: Progress, event: str, **fields: Any) -> None:
    progress.feed({"event": event, **fields})


PLAN = [
    {"step": "images", "target": "app:1", "action": "build", "reason": "missing"},
    {"step": "services", "target": "api", "action": "create", "reason": "no container"},
    {"step": "services", "target": "db", "action": "recreate", "reason": "hash differs"},
]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def progress(clock: Clock) -> Progress:
    view = Progress(title="apply demo", clock=clock)
    feed(view, "step started", step="observe")
    clock.now += 0.4
    feed(view, "step finished", step="observe", seconds=0.4)
    feed(view, "plan", changes=PLAN, ok=2)
    return view


def test_plan_lists_every_step_and_target_pending(progress: Progress) -> None:
    """Once planned, each step and target with a change is listed, pending, in plan order."""
    text = shown(progress)
    assert text.index("images") < text.index("app:1") < text.index("services") < text.index("api")
    assert line_of(text, "observe").split()[:3] == ["✓", "observe", "0.4"]
    assert line_of(text, "build     app:1").split()[:3] == ["·", "build", "app:1"]
    assert line_of(text, " db").split()[:3] == ["·", "recreate", "db"]


def test_a_running_build_shows_its_elapsed_time_and_last_lines(
    progress: Progress, clock: Clock
) -> None:
    """What runs now, for how long, and the build's last five lines; gone once it is built."""
    feed(progress, "step started", step="images")
    feed(progress, "building image", image="app:1", context="/ctx")
    for number in range(8):
        feed(progress, "build output", image="app:1", line=f"#{number} step output")
        feed(progress, "build output", image="app:1", line="")  # blank lines are not shown
    clock.now += 2.5
    text = shown(progress)
    assert "now: images (building app:1)" in line_of(text, "apply demo")
    assert "2.9 s" in line_of(text, "apply demo")  # since the run started
    assert "2.5 s" in line_of(text, "build     app:1")
    assert [line.strip() for line in text.splitlines() if "step output" in line] == [
        f"#{n} step output" for n in range(3, 8)
    ]
    clock.now += 0.5
    text = shown(progress)
    assert "3.0 s" in line_of(text, "build     app:1"), "the elapsed time ticks at each render"

    feed(progress, "changed", step="images", target="app:1", action="build")
    feed(progress, "step finished", step="images", seconds=3.0)
    text = shown(progress)
    assert "step output" not in text
    assert line_of(text, "build     app:1").split()[:4] == ["✓", "build", "app:1", "3.0"]
    assert "1 changed" in line_of(text, "images   ")


def test_each_service_health_as_it_changes(progress: Progress, clock: Clock) -> None:
    """compose up, its progress lines, then each sampled health state, including a failure."""
    feed(progress, "step started", step="services")
    feed(progress, "compose up", services=["api", "db"])
    feed(progress, "compose output", line=" Container demo-db-1  Started")
    text = shown(progress)
    assert "now: services (compose up api, db)" in text
    assert "Container demo-db-1  Started" in text
    feed(progress, "service health", service="db", state="health: starting", ready=False)
    feed(progress, "service health", service="api", state="no container yet", ready=False)
    feed(progress, "service health", service="cache", state="running, healthy", ready=True)
    assert "health: starting" in line_of(shown(progress), " db ")
    assert line_of(shown(progress), "cache").split()[:2] == ["✓", "cache"], "in sync, waited on"
    feed(progress, "waiting for services", pending={"db": "health: starting", "api": "created"})
    assert "created" in line_of(shown(progress), " api ")
    feed(progress, "service health", service="db", state="running, healthy", ready=True)
    feed(progress, "service health", service="api", state="unhealthy", ready=False, failed=True)
    text = shown(progress)
    assert line_of(text, " db ").split()[0] == "✓"
    assert "running, healthy" in line_of(text, " db ")
    assert line_of(text, " api ").split()[0] == "✗"
    assert "unhealthy" in line_of(text, " api ")


def test_a_stop_during_the_wait_leaves_no_service_spinning(progress: Progress) -> None:
    """A stop cuts the wait: ready services stay ready, the others show as failed."""
    feed(progress, "step started", step="services")
    feed(progress, "compose up", services=["api", "db"])
    feed(progress, "service health", service="db", state="running, healthy", ready=True)
    feed(progress, "service health", service="api", state="health: starting", ready=False)
    feed(progress, "step failed", step="services", error="stopped by SIGINT while waiting")
    text = shown(progress)
    assert line_of(text, " db ").split()[0] == "✓"
    assert line_of(text, " api ").split()[0] == "✗"
    assert "stopped by SIGINT" in line_of(text, "services  ")


def test_each_check_as_it_lands(progress: Progress) -> None:
    """Checks appear one by one with their detail; a failing one marks the run failed at the end."""
    feed(progress, "step started", step="checks")
    feed(progress, "check", name="API health", passed=True, detail="HTTP 200")
    text = shown(progress)
    assert line_of(text, "API health").split()[0] == "✓"
    assert "HTTP 200" in line_of(text, "API health")
    assert "worker registered" not in text
    feed(progress, "check", name="worker registered", passed=False, detail="0 workers")
    feed(progress, "step finished", step="checks", seconds=1.0)
    text = shown(progress)
    assert line_of(text, "worker registered").split()[0] == "✗"
    assert "failed" in line_of(text, "apply demo")


def test_a_failed_step_and_what_a_stop_cut_short(progress: Progress) -> None:
    """A failed step shows its error; at the end, what was still running shows unfinished."""
    feed(progress, "step started", step="images")
    feed(progress, "building image", image="app:1")
    feed(progress, "step failed", step="images", error="build failed: no space left\nmore")
    text = shown(progress)
    assert line_of(text, "images   ").split()[0] == "✗"
    assert "build failed: no space left" in text
    assert "more" not in text
    assert line_of(text, "build     app:1").split()[0] == "✗"

    other = Progress(title="apply demo", clock=Clock())
    feed(other, "step started", step="verify")
    other.finish()
    assert "did not finish" in line_of(shown(other), "verify")


def test_a_lock_wait_is_shown_then_taken(progress: Progress) -> None:
    """Waiting for another apply's lock is a phase of its own, closed when observing starts."""
    view = Progress(title="apply demo", clock=Clock())
    feed(view, "waiting for the lock", project="demo", timeout=30.0)
    assert "another apply holds it" in line_of(shown(view), "lock    ")
    feed(view, "step started", step="observe")
    assert line_of(shown(view), "lock    ").split()[0] == "✓"


def test_unknown_and_malformed_events_never_break_the_view(progress: Progress) -> None:
    """An unknown event or one missing its fields leaves the live view drawing as before."""
    feed(progress, "something new", x=1)
    feed(progress, "changed")  # fields missing
    assert "apply demo" in shown(progress)


def test_plan_text_is_the_plan_commands_text() -> None:
    """The plan printed above the view reads as `plan` prints it."""
    changes = [{**PLAN[0], "diff": "-a\n+b\n"}]
    assert plan_text(changes, 2).plain == (
        "images        build     app:1  (missing)\n    -a\n    +b\nPlan: 1 to change, 2 ok."
    )
    assert plan_text([], 3).plain == "In sync: no changes (3 ok)."


@pytest.fixture
def live_logging() -> Iterator[tuple[LiveView, io.StringIO, io.StringIO]]:
    """The CLI's structlog set-up with a live view on a (non-terminal) console to a buffer."""
    screen, stderr = io.StringIO(), io.StringIO()
    view = LiveView(
        Console(file=screen, width=120, color_system=None), Progress(title="apply t"), level=30
    )
    saved = sys.stderr
    sys.stderr = stderr
    try:
        cli._configure_logging("json", verbose=False, view=view)
        yield view, screen, stderr
    finally:
        sys.stderr = saved
        view.stop()


def test_debug_events_reach_the_view_but_not_the_log(
    live_logging: tuple[LiveView, io.StringIO, io.StringIO],
) -> None:
    """Without --verbose, debug and info events feed the view and are printed nowhere."""
    view, screen, stderr = live_logging
    log = get_logger("reconciler.test")
    log.debug("step started", step="images")
    log.debug("build output", image="app:1", line="#1 secret sauce")
    log.info("building image", image="app:1")
    assert view.progress.phases["images"].status == "running"
    assert list(view.progress.build_lines["app:1"]) == ["#1 secret sauce"]
    assert stderr.getvalue() == ""
    assert screen.getvalue() == ""


def test_warnings_print_above_the_view_while_it_runs(
    live_logging: tuple[LiveView, io.StringIO, io.StringIO],
) -> None:
    """Warnings and errors stay visible: above the view while it runs, on stderr after."""
    view, screen, stderr = live_logging
    log = get_logger("reconciler.test")
    view.start()
    log.warning("stop requested; stopping", signal="SIGINT")
    log.debug("plan", changes=PLAN, ok=2)
    view.stop()
    assert json.loads(screen.getvalue().splitlines()[0])["event"] == "stop requested; stopping"
    assert "Plan: 3 to change, 2 ok." in screen.getvalue()
    assert stderr.getvalue() == ""
    log.error("after the view", code=1)
    assert json.loads(stderr.getvalue())["event"] == "after the view"


def test_without_a_view_the_logging_is_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    """--progress plain (and any run off a terminal): debug events stay out of the JSON log."""
    cli._configure_logging("json", verbose=False)
    log = get_logger("reconciler.test")
    log.debug("step started", step="images")
    log.info("changed", step="images")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["changed"]
    structlog.reset_defaults()


def test_the_view_writes_through_the_redacting_stream() -> None:
    """A secret in a build line never reaches the terminal, live or in the last frame."""
    out = io.StringIO()
    secrets = Secrets(["hunter2-password"])
    view = LiveView(make_console(RedactingStream(out, secrets), force=True))
    view.start()
    feed(view.progress, "step started", step="images")
    feed(view.progress, "building image", image="app:1")
    feed(view.progress, "build output", image="app:1", line="pw hunter2-password")
    view.console.print(view.progress.render())
    view.stop()
    assert "hunter2-password" not in out.getvalue()
    assert "pw ***" in out.getvalue()


def test_a_secret_cut_at_the_terminal_edge_is_still_redacted() -> None:
    """Lines are cut to the terminal's width: the secret is masked before, never half shown."""
    secret = "hunter2-password-0123456789"
    out = io.StringIO()
    stream = cast(IO[str], RedactingStream(out, Secrets([secret])))
    console = Console(file=stream, width=40, color_system=None)
    progress = Progress(redact=Secrets([secret]).redact)
    feed(progress, "step started", step="images")
    feed(progress, "building image", image="app:1")
    feed(progress, "build output", image="app:1", line=f"{'x' * 20} {secret}")
    feed(progress, "step failed", step="migrations", error=f"bad dsn {secret}")
    console.print(progress.render())
    assert "hunter2" not in out.getvalue()
    assert f"{'x' * 20} ***" in out.getvalue()


def test_a_child_s_lines_are_passed_on_as_they_come(tmp_path: Path) -> None:
    """processes.run(on_line=...): each line of stdout and stderr on arrival; output kept whole."""
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        (tmp_path / line).touch()

    # The child writes its next line only once its last one was passed on (a file of that name).
    script = (
        f"echo one; until [ -e {tmp_path}/one ]; do sleep 0.05; done; echo two >&2; "
        f"until [ -e {tmp_path}/two ]; do sleep 0.05; done; echo three"
    )
    try:
        done = processes.run(
            ["sh", "-c", script],
            stop=StopToken(),
            on_stop=processes.OnStop.CUT,
            on_line=on_line,
            timeout=60,
        )
    except processes.ProcessTimeout:
        pytest.fail(f"a line was held back until the child ended; passed on: {seen}")
    assert seen == ["one", "two", "three"]
    assert (done.returncode, done.stdout, done.stderr) == (0, "one\nthree\n", "two\n")


def test_a_streamed_child_is_still_cut_by_a_stop() -> None:
    """A stop request cuts a child whose lines are streamed, as it cuts any other."""
    stop = StopToken()
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        stop.request(signal.SIGINT)

    with pytest.raises(StopRequested):
        processes.run(
            ["sh", "-c", "echo started; sleep 30; echo finished"],
            stop=stop,
            on_stop=processes.OnStop.CUT,
            on_line=on_line,
        )
    assert seen == ["started"], "the child ran to its end"


# ---- the CLI on a pseudo-terminal (no docker: an apply of the compose-file step only) ----------


def write_state(tmp_path: Path, image: str) -> Path:
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1  # keep\n")
    state = tmp_path / "s.yaml"
    state.write_text(
        f"name: livetest\ncompose:\n  file: c.yml\n  project: lv{os.getpid()}\n"
        f"services:\n  a:\n    image: {image}\n"
    )
    return state


def apply_argv(state: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        "apply",
        str(state),
        "--only",
        "compose-file",
        *extra,
    ]


@pytest.fixture
def lock_dir(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "locks"
    return {**os.environ, "RECONCILER_LOCK_DIR": str(directory)}


def test_apply_on_a_terminal_shows_plan_then_view_then_recap(
    tmp_path: Path, lock_dir: dict[str, str]
) -> None:
    """On a TTY: the plan first, then the view of each step, then the summary and the recap."""
    state = write_state(tmp_path, "a:2")
    terminal = Terminal(apply_argv(state), env=lock_dir)
    try:
        assert terminal.wait(60) == 0
    finally:
        terminal.close()
    text = terminal.text
    screen = terminal.display()
    rows = screen.splitlines()
    plan = rows.index("Plan: 1 to change, 0 ok.")
    assert rows[0].startswith("compose-file  edit      c.yml:services.a.image")
    assert plan < rows.index(line_of(screen, "apply livetest")), "the plan is above the view"
    assert text.index("apply livetest") < text.rindex("ok=0 changed=1 failed=0")
    assert line_of(screen, "✓ observe")
    assert line_of(screen, "✓ compose-file").endswith("1 changed")
    assert line_of(screen, "✓ edit").split()[:3] == ["✓", "edit", "c.yml:services.a.image"]
    assert screen.splitlines()[-1] == "ok=0 changed=1 failed=0"
    assert "[info" not in screen, "info events go to the view, not the console log"
    assert terminal.cursor_restored()
    assert "image: a:2  # keep" in (tmp_path / "c.yml").read_text()


def span(seconds: list[float]) -> float:
    """From the first to the last of `seconds` (0 for fewer than two)."""
    return seconds[-1] - seconds[0] if len(seconds) > 1 else 0.0


def test_a_lock_wait_ticks_every_second_and_ctrl_c_restores_the_terminal(
    tmp_path: Path, lock_dir: dict[str, str]
) -> None:
    """A long wait is never silent: the terminal changes at least once a second; a Ctrl-C exits
    130 with the stop visible and the cursor given back."""
    state = write_state(tmp_path, "a:2")
    with project_lock(f"lv{os.getpid()}", directory=Path(lock_dir["RECONCILER_LOCK_DIR"])):
        terminal = Terminal(apply_argv(state, "--lock-timeout", "60"), env=lock_dir)
        try:
            terminal.read_until(lambda t: "another apply holds it" in t.display(), 30)
            since = len(terminal.text)
            # The view's own clock, as each redraw shows it: 3 s of the wait, no step of 1 s.
            terminal.read_until(lambda t: span(t.shown_seconds("apply livetest", since)) > 3.0, 30)
            shown = terminal.shown_seconds("apply livetest", since)
            assert max(b - a for a, b in itertools.pairwise(shown)) < 1.0, shown
            terminal.interrupt(signal.SIGINT)
            code = terminal.wait(30)
        finally:
            terminal.close()
    assert code == 130
    screen = terminal.display()
    assert "stop requested" in screen
    assert line_of(screen, "lock").split()[0] == "✗"
    assert terminal.cursor_restored()
    assert not terminal.screen.cursor.hidden
    assert "image: a:1  # keep" in (tmp_path / "c.yml").read_text()


def test_off_a_terminal_nothing_changes_and_live_can_be_forced(tmp_path: Path) -> None:
    """Pipes: JSON logs without the view's debug events; --progress live draws all the same."""
    state = write_state(tmp_path, "a:1")
    env = {**os.environ, "RECONCILER_LOCK_DIR": str(tmp_path / "locks")}
    plain = subprocess.run(
        apply_argv(state), capture_output=True, text=True, check=False, env=env, timeout=60
    )
    assert plain.returncode == 0, plain.stderr
    assert "\x1b[" not in plain.stdout + plain.stderr
    events = [json.loads(line)["event"] for line in plain.stderr.splitlines()]
    assert "step started" not in events
    assert "in sync; nothing to do" in events
    assert plain.stdout.splitlines()[-1] == "ok=1 changed=0 failed=0"
    forced = subprocess.run(
        apply_argv(state, "--progress", "live"),
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert forced.returncode == 0, forced.stderr
    assert "\x1b[?25l" in forced.stdout, "the live view hides the cursor while it draws"
    assert "In sync: no changes (1 ok)." in forced.stdout
    assert forced.stdout.splitlines()[-1] == "ok=1 changed=0 failed=0"
    assert forced.stderr == ""
    as_json = subprocess.run(
        apply_argv(state, "--progress", "live", "--json"),
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["summary"] == {"ok": 1, "changed": 0, "failed": 0}
    assert "In sync: no changes (1 ok)." in as_json.stderr, "with --json the view is on stderr"


# The live view of `apply` on a real pseudo-terminal, against the real engine: what a person sees.
#
# The e2e stack's worker is made slow to become healthy (its healthcheck passes 3 s after its
# first run), so every apply has a real health wait to watch. The screen is read through a
# terminal emulator (pyte), and every read of the terminal is timestamped.


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


def line_of_live_view(screen: str, pattern: str) -> str:
    lines = [line for line in screen.splitlines() if re.search(pattern, line)]
    assert len(lines) == 1, f"{pattern!r} on {len(lines)} lines of:\n{screen}"
    return lines[0]


@pytest.mark.docker
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
        assert line_of_live_view(screen, rf"^✓ {step} ")
    assert "6 changed" not in line_of_live_view(screen, r"^✓ images "), "3 images, not 6"
    assert line_of_live_view(screen, r"^✓ images ").endswith("3 changed")
    for service in ("api", "db", "worker"):
        assert line_of_live_view(screen, rf"✓ create +{service} ").endswith("running, healthy")
    assert "✓ api answers" in screen
    assert "HTTP 200" in line_of_live_view(screen, r"✓ api answers")
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


@pytest.mark.docker
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
    assert "stopped by SIGINT" in line_of_live_view(screen, r"^✗ services ")
    assert line_of_live_view(screen, r"✗ create +worker ").endswith("health: starting")
    assert not SPINNER.search(screen), "nothing shows as running once the run ended"
    assert "ok=" in screen.splitlines()[-1]
    assert terminal.cursor_restored()
    assert not terminal.screen.cursor.hidden


@pytest.mark.docker
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
