"""Library use without logging configured prints nothing; configured, the events arrive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from structlog.testing import capture_logs

import reconciler
from reconciler.plans import Step

PROGRAM = """
import sys
import reconciler
from reconciler.plans import Step
state = reconciler.load_state(sys.argv[1])
result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,), lock=False)
assert result.succeeded and result.changed, result.error
"""


def write_pin(tmp_path: Path) -> Path:
    (tmp_path / "c.yml").write_text("services:\n  a:\n    image: a:1\n")
    state = tmp_path / "s.yaml"
    state.write_text("name: s\ncompose:\n  file: c.yml\nservices:\n  a:\n    image: a:2\n")
    return state


def test_unconfigured_library_apply_prints_nothing(tmp_path: Path) -> None:
    """An apply that edits the compose file, from a program that never configured logging: no output."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(write_pin(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
    assert (tmp_path / "c.yml").read_text() == "services:\n  a:\n    image: a:2\n"


def test_configured_logging_receives_the_library_events(tmp_path: Path) -> None:
    """Once the program configures structlog, the library's events reach it."""
    state = reconciler.load_state(write_pin(tmp_path))
    with capture_logs() as events:
        result = reconciler.apply(state, steps=(Step.COMPOSE_FILE,), lock=False)
    assert result.succeeded
    assert "compose file written" in [event["event"] for event in events]
