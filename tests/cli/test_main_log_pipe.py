"""Logging cannot stop an apply: a stdout or stderr whose reader went away (`apply 2>&1 | head`,
a log collector that died) is noted once and then ignored; the run finishes, writes its report
and exits with its real code. No docker: `--only compose-file`."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.secrets.redact import RedactingStream, Secrets
from tests.conftest import BUSYBOX, RECONCILER, STACK, compose_down

COMPOSE = "services:\n  a:\n    image: 'a:1'\n"
EDITED = "services:\n  a:\n    image: 'a:2'\n"


class GoneReader(io.StringIO):
    """A text stream whose reader went away: every write (or flush) raises `error`; `attempts`
    counts the calls that raised."""

    def __init__(self, error: OSError | None = None, *, on: str = "write") -> None:
        super().__init__()
        self.error = error or BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.on = on
        self.attempts = 0

    def write(self, text: str) -> int:
        if self.on == "write":
            self.attempts += 1
            raise self.error
        return super().write(text)

    def flush(self) -> None:
        if self.on == "flush":
            self.attempts += 1
            raise self.error


def write_state(tmp_path: Path) -> Path:
    """A state pinning a:2 over a compose file running a:1 (one compose-file change)."""
    (tmp_path / "c.yml").write_text(COMPOSE)
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n")
    return state


@pytest.fixture
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe whose read end is already closed (every write: EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        yield write
    finally:
        os.close(write)


def test_a_write_to_a_gone_reader_is_absorbed_and_later_ones_are_not_tried() -> None:
    """The first BrokenPipeError is kept in `lost`; the write and all later ones return normally."""
    inner = GoneReader()
    stream = RedactingStream(inner, Secrets())
    assert stream.write("first line\n") == len("first line\n")
    assert isinstance(stream.lost, BrokenPipeError)
    assert stream.lost_at is not None
    assert stream.write("second line\n") == len("second line\n")
    stream.flush()
    assert inner.attempts == 1, "nothing more is tried once the reader is gone"


def test_a_flush_to_a_gone_reader_is_absorbed() -> None:
    """A broken pipe found at flush (stdout is block-buffered into a pipe) never raises."""
    inner = GoneReader(on="flush")
    stream = RedactingStream(inner, Secrets())
    stream.write("buffered\n")
    stream.flush()
    stream.flush()
    assert isinstance(stream.lost, BrokenPipeError)
    assert inner.attempts == 1


def test_other_write_failures_are_absorbed_too() -> None:
    """A full disk under a redirected log (ENOSPC) or a hung-up terminal (EIO) is kept, not raised."""
    for code in (errno.ENOSPC, errno.EIO):
        stream = RedactingStream(GoneReader(OSError(code, os.strerror(code))), Secrets())
        stream.write("line\n")
        assert stream.lost is not None
        assert stream.lost.errno == code


def test_in_process_apply_with_a_gone_stderr_finishes_and_writes_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every log line fails with EPIPE: the apply still edits, reports and returns 0."""
    state = write_state(tmp_path)
    gone = GoneReader()
    monkeypatch.setattr(sys, "stderr", gone)
    report = tmp_path / "r.md"
    code = main(["apply", str(state), "--only", "compose-file", "--report", str(report)])
    assert code == 0
    assert (tmp_path / "c.yml").read_text() == EDITED
    text = report.read_text()
    assert "apply PASSED" in text
    assert "## Output lost" in text
    assert "- stderr could not be written from " in text
    assert "(broken pipe: its reader had gone)" in text
    assert gone.attempts == 1, "the first log line found the reader gone; no other was tried"
    assert sys.stderr is gone, "main() gives the caller's stream back"


def test_apply_into_closed_pipes_exits_with_its_real_code_and_writes_its_report(
    tmp_path: Path, closed_pipe: int
) -> None:
    """`python -m reconciler apply ... 2>&1 | head` with head gone: exit 0, report, file edited."""
    state = write_state(tmp_path)
    done = subprocess.run(
        [*RECONCILER, "apply", str(state), "--only", "compose-file", "--report", "r.md"],
        stdout=closed_pipe,
        stderr=closed_pipe,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, "never killed by SIGPIPE (-13), never an internal error (1)"
    assert (tmp_path / "c.yml").read_text() == EDITED
    report = (tmp_path / "r.md").read_text()
    assert "apply PASSED" in report
    assert "- stderr could not be written from " in report


def test_a_refused_apply_into_closed_pipes_keeps_its_exit_code(
    tmp_path: Path, closed_pipe: int
) -> None:
    """Bad input (no such state file) with both readers gone: exit 3, as it says, not a crash."""
    done = subprocess.run(
        [*RECONCILER, "apply", str(tmp_path / "nope.yaml")],
        stdout=closed_pipe,
        stderr=closed_pipe,
        check=False,
        timeout=120,
    )
    assert done.returncode == 3


def test_a_gone_stdout_is_noted_once_on_stderr(tmp_path: Path, closed_pipe: int) -> None:
    """stdout's reader gone, stderr still read: one warning there saying what was lost, exit 0."""
    state = write_state(tmp_path)
    done = subprocess.run(
        [*RECONCILER, "apply", str(state), "--only", "compose-file", "--log-format", "json"],
        stdout=closed_pipe,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    notes = [e for e in events if e["event"].startswith("stdout could not be written")]
    assert len(notes) == 1
    assert notes[0]["level"] == "warning"
    assert notes[0]["reason"] == "broken pipe: its reader had gone"
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr


def test_help_into_a_closed_pipe_exits_0_without_a_traceback(closed_pipe: int) -> None:
    """`python -m reconciler apply --help | head -0`: exit 0, nothing said about the pipe."""
    done = subprocess.run(
        [*RECONCILER, "apply", "--help"],
        stdout=closed_pipe,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stderr == ""


# Logging cannot stop an apply, on a real engine: the reader of the apply's output goes away
# during `compose up` (`apply 2>&1 | head`, a CI log collector that dies); the apply still waits
# for health, writes its report and exits 0.


SERVICE = """\
  web:
    build: .
    image: {image}
    environment:
      ROLE: web
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 250ms
      timeout: 2s
      retries: 120
"""


@pytest.fixture
def project(docker_engine: None, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A one-service busybox project named `lp-...`: its state file; torn down afterwards."""
    name = f"lp-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "project"
    directory.mkdir()
    for file in ("Dockerfile", "serve.sh"):
        shutil.copy2(STACK / file, directory / file)
    shutil.copy2(BUSYBOX, directory / "busybox")
    (directory / "docker-compose.yml").write_text(
        "services:\n" + SERVICE.format(image=f"{name}-img:1")
    )
    state = directory / "state.yaml"
    state.write_text(
        f"name: {name}\ncompose:\n  file: docker-compose.yml\n  project: {name}\n"
        "services:\n  web:\n    health_timeout: 60\n"
    )
    yield state, name
    compose = directory / "docker-compose.yml"
    compose_down(["docker", "compose", "-f", str(compose), "-p", name], "-t", "0")
    subprocess.run(
        ["docker", "image", "rm", "-f", f"{name}-img:1"], capture_output=True, check=False
    )


@pytest.mark.docker
def test_output_reader_gone_during_compose_up(project: tuple[Path, str], tmp_path: Path) -> None:
    """`apply 2>&1 | head` with head gone at `compose up`: exit 0, report written, web healthy."""
    state, name = project
    report = tmp_path / "r.md"
    apply = subprocess.Popen(
        [*RECONCILER, "apply", str(state), "--log-format", "json", "--report", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert apply.stdout is not None
    events: list[str] = []
    for line in apply.stdout:
        event = json.loads(line).get("event", "") if line.startswith("{") else ""
        events.append(event)
        if event.startswith("compose up"):
            break
    apply.stdout.close()  # the reader goes away: every later write of the apply is EPIPE
    code = apply.wait(timeout=600)
    assert any(event.startswith("compose up") for event in events), events
    assert code == 0, report.read_text() if report.exists() else "no report"
    text = report.read_text()
    assert "apply PASSED" in text
    assert "- stderr could not be written from " in text
    assert "(broken pipe: its reader had gone)" in text
    health = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Health.Status}}", f"{name}-web-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert health.stdout.strip() == "healthy", health.stderr
