"""No shell anywhere: argv from the state reaches the command as literal arguments."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, Stack, run_cli

METACHARACTERS = [
    "$(touch /tmp/pwned-a)",
    "`touch /tmp/pwned-b`",
    ";",
    "touch",
    "/tmp/pwned-c",
    "&&",
    "|",
    ">",
    "/tmp/pwned-d",
]


def test_source_never_starts_a_shell() -> None:
    """No module uses shell=True, os.system or os.popen."""
    for path in (REPO / "reconciler").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", text), path


@pytest.mark.docker
def test_metacharacters_in_state_commands_stay_inert(stack: Stack) -> None:
    """A check whose argv is full of shell syntax echoes it literally; nothing is created."""
    argv = ", ".join(f"'{arg}'" for arg in ["echo", *METACHARACTERS])
    stack.state_file.write_text(
        stack.state_file.read_text()
        + f"checks:\n  - name: inert\n    exec:\n      service: api\n      command: [{argv}]\n"
        + "      expect_output: '$(touch /tmp/pwned-a) `touch /tmp/pwned-b` ; touch /tmp/pwned-c && | > /tmp/pwned-d'\n"
    )
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "check  PASS  inert" in done.stdout
    listing = subprocess.run(
        stack.compose_argv("exec", "-T", "api", "ls", "/tmp"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "pwned" not in listing
    assert not list(Path("/tmp").glob("pwned-*"))
