"""A daemon stopped in the middle of an apply: exit 1 with a clear message, nothing lost; after
the daemon is back, the next apply converges.

It stops the main engine alone: the dockerd of Docker's default pid file and socket (never
`pkill -x dockerd`, which would also stop the remote and Swarm test engines, dockerd processes
with their own pid files and sockets). It runs after every other test (`stops_engine`, ordered
last by tests/conftest.py), whatever the files' names.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Stack, run_cli, start_apply_until

pytestmark = [pytest.mark.docker, pytest.mark.stops_engine]

MAIN_SOCKET = Path("/var/run/docker.sock")
MAIN_PIDFILE = Path("/var/run/docker.pid")


def engine_up() -> bool:
    """The main engine answers on its own socket (whatever DOCKER_HOST says)."""
    argv = ["docker", "--host", f"unix://{MAIN_SOCKET}", "info"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def is_dockerd(pid: int) -> bool:
    """`pid` is a running dockerd."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"
    except OSError:
        return False


def socket_listeners(socket: Path) -> set[int]:
    """The dockerd processes listening on the unix socket `socket` (as bound or resolved)."""
    listed = subprocess.run(["ss", "-xlpnH"], capture_output=True, text=True, check=False)
    names = {str(socket), os.path.realpath(socket)}
    pids: set[int] = set()
    for line in listed.stdout.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] in names:
            pids.update(int(pid) for pid in re.findall(r'"dockerd",pid=(\d+)', line))
    return pids


def main_engine_pid() -> int:
    """The main engine's dockerd: its pid file's process when that is a dockerd listening on
    the main socket, else the one dockerd listening there; the test fails rather than guess."""
    listeners = socket_listeners(MAIN_SOCKET)
    try:
        recorded = int(MAIN_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        recorded = None
    # No listener seen (no `ss`): the pid file alone, if it names a dockerd.
    if recorded is not None and is_dockerd(recorded) and (not listeners or recorded in listeners):
        return recorded
    if len(listeners) == 1:
        return next(iter(listeners))
    pytest.fail(
        f"cannot tell the main engine's dockerd (pid file {MAIN_PIDFILE}: {recorded}, "
        f"listening on {MAIN_SOCKET}: {sorted(listeners)}); stopping nothing"
    )


def test_daemon_stopped_mid_apply_then_restarted(stack: Stack) -> None:
    """Stopping dockerd during a build fails apply with exit 1; restarting it lets apply converge."""
    before = stack.compose_file.read_bytes()
    apply = start_apply_until(stack.state_file, "building image")
    os.kill(main_engine_pid(), signal.SIGTERM)
    try:
        deadline = time.monotonic() + 60
        while engine_up() and time.monotonic() < deadline:
            time.sleep(0.5)
        out, err = apply.communicate(timeout=300)
        assert apply.returncode == 1, out + err[-3000:]
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert errors
        assert "Cannot connect to the Docker daemon" in errors[0] or "daemon" in errors[0].lower()
        assert "Traceback" not in err
        assert stack.compose_file.read_bytes() == before
        retries = [
            json.loads(line)
            for line in err.splitlines()
            if line.startswith("{")
            and json.loads(line).get("event") == "docker call failed transiently; retrying"
        ]
        assert retries, "the outage must have been retried before giving up"
    finally:
        restart = subprocess.run(
            ["bash", str(REPO / "deploy" / "engine" / "ensure-docker.sh")],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    assert restart.returncode == 0, restart.stderr
    done = run_cli("apply", stack.state_file)
    assert done.returncode == 0, done.stderr[-3000:]
