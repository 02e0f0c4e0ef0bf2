"""One apply at a time per project: held locks fail or wait, dead holders are taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.cli.main import main
from reconciler.locks.local import LockHeldError, project_lock

HOLD = """
import sys, time
from pathlib import Path
from reconciler.locks.local import project_lock
with project_lock(sys.argv[1], directory=Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold(project: str, directory: Path, seconds: float) -> subprocess.Popen[str]:
    """A separate process holding the lock for `seconds`; returns once it holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, project, str(directory), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_holder_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    """With timeout 0 the second apply fails immediately; the message names pid, host and start."""
    holder = hold("shop", tmp_path, 30)
    try:
        with pytest.raises(LockHeldError) as caught, project_lock("shop", directory=tmp_path):
            pass
        assert holder.poll() is None, "refused only once the holder let go: it waited"
        message = str(caught.value)
        assert f"pid {holder.pid} on {socket.gethostname()} since 20" in message
        assert caught.value.exit_code == 1
    finally:
        holder.kill()
        holder.wait()


def test_waits_up_to_the_timeout_for_the_holder(tmp_path: Path) -> None:
    """A lock released within --lock-timeout is acquired after waiting."""
    holder = hold("shop", tmp_path, 1.0)
    try:
        with project_lock("shop", directory=tmp_path, timeout=30):
            pass
    finally:
        holder.wait()


def test_lock_of_a_killed_holder_is_taken_over_and_logged(tmp_path: Path) -> None:
    """SIGKILL leaves holder details behind; the next apply takes the lock and logs the takeover."""
    holder = hold("shop", tmp_path, 30)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with capture_logs() as logs, project_lock("shop", directory=tmp_path):
        pass
    takeovers = [
        entry for entry in logs if entry["event"] == "took over a lock left by a dead process"
    ]
    assert takeovers
    assert takeovers[0]["pid"] == holder.pid


def test_projects_do_not_share_a_lock(tmp_path: Path) -> None:
    """Locks are per compose project: another project is not blocked."""
    holder = hold("shop", tmp_path, 30)
    try:
        with project_lock("other", directory=tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_cli_apply_exits_1_when_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apply` on a locked project exits 1 and says who holds the lock; nothing is written."""
    locks = tmp_path / "locks"
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(locks))
    compose = tmp_path / "c.yml"
    compose.write_text("services:\n  a:\n    image: a:1\n")
    (tmp_path / "s.yaml").write_text(
        "name: s\ncompose:\n  file: c.yml\n  project: shop\nservices:\n  a:\n    image: a:2\n"
    )
    holder = hold("shop", locks, 30)
    try:
        assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 1
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert compose.read_text() == "services:\n  a:\n    image: a:1\n"
    finally:
        holder.kill()
        holder.wait()
    assert main(["apply", str(tmp_path / "s.yaml"), "--only", "compose-file"]) == 0
    assert "a:2" in compose.read_text()
